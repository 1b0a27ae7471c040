//! Paged, sorted, glob-filtered lists: the reference API's list envelope, in SQL.

use crate::Backend;

/// How a field sorts. The same order on both backends: text compares case-insensitively and
/// byte-wise on the lowercased text (PostgreSQL's collation is pinned to "C"); an absent
/// optional time (a token that never expires) sorts after every present one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Text(&'static str),
    Number(&'static str),
    /// A nullable number where NULL means "never" (later than any time).
    NumberOrNever(&'static str),
}

impl Sort {
    pub(crate) fn expr(self, backend: Backend) -> String {
        match (self, backend) {
            (Sort::Text(c), Backend::Postgres) => format!("LOWER({c}) COLLATE \"C\""),
            (Sort::Text(c), Backend::Sqlite) => format!("LOWER({c})"),
            (Sort::Number(c), _) => c.to_owned(),
            (Sort::NumberOrNever(c), _) => format!("COALESCE({c}, {})", i64::MAX),
        }
    }
}

/// A list request, already checked against the resource's sortable and filterable fields.
/// Column names are `'static` strings from the resource's own field table, never user input.
#[derive(Clone, Debug)]
pub struct ListSpec {
    pub sort: Sort,
    pub descending: bool,
    /// Zero-based page number.
    pub page: i64,
    pub per_page: i64,
    pub filter: Option<Filter>,
}

#[derive(Clone, Debug)]
pub struct Filter {
    pub column: &'static str,
    /// A glob where `*` matches any run of characters; matched case-insensitively.
    pub glob: String,
}

/// One page of results and the number of matches over all pages.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// A resource's API field names and the columns they sort or filter on.
pub struct Fields {
    pub sortable: &'static [(&'static str, Sort)],
    pub filterable: &'static [(&'static str, &'static str)],
    pub default_sort: &'static str,
}

/// Translate a `*` glob into a LIKE pattern with `\` as the escape character.
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 2);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// SQL for one page and for the total, given a `SELECT … FROM … WHERE <cond>` whose condition
/// uses `$1..$n`. The filter, when present, is bound as `$n+1`; `id` breaks ties so pages are
/// stable.
pub(crate) fn page_sql(
    backend: Backend,
    select_where: &str,
    count_where: &str,
    n: usize,
    spec: &ListSpec,
) -> (String, String) {
    let filter = match &spec.filter {
        Some(f) => format!(
            " AND LOWER({}) LIKE LOWER(${}) ESCAPE '\\'",
            f.column,
            n + 1
        ),
        None => String::new(),
    };
    let dir = if spec.descending { "DESC" } else { "ASC" };
    let list = format!(
        "{select_where}{filter} ORDER BY {col} {dir}, id {dir} LIMIT {limit} OFFSET {offset}",
        col = spec.sort.expr(backend),
        limit = spec.per_page,
        offset = spec.page.saturating_mul(spec.per_page),
    );
    let count = format!("{count_where}{filter}");
    (list, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(glob_to_like("my*token"), "my%token");
        assert_eq!(glob_to_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(glob_to_like("*"), "%");
    }
}
