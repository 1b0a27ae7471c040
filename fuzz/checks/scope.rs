//! The scope parser: any list of strings parses or is refused without panicking; a parsed
//! scope round-trips through its strings, compiles, and is within itself; refusals never
//! echo a secret.
use tollgate_core::Scope;

/// One input: panics when a property fails.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let items: Vec<&str> = s.split('\n').collect();
    match Scope::parse(&items) {
        Ok(scope) => {
            let again = Scope::parse(&scope.to_strings()).expect("a scope's own strings parse");
            assert_eq!(again.compile(), scope.compile());
            assert!(scope.within(&scope).is_ok());
            assert!(scope.within(&Scope::all()).is_ok());
            let _ = scope.summary();
        }
        Err(e) => {
            let message = e.to_string();
            assert_eq!(tollgate_core::secret::redact(&message), message);
        }
    }
}
