// Tollgate console: the little behaviour pages need. Plain JavaScript, no build step;
// every page works without it, less conveniently (it is served from our own origin, so the
// Content-Security-Policy allows no inline script at all).
'use strict';
(function () {
  function pad(n) { return String(n).padStart(2, '0'); }

  // The value a datetime-local input takes for a Date, in the reader's local time.
  function localValue(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
      'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  // Dates arrive in UTC; show them in the reader's local time.
  function localTimes() {
    document.querySelectorAll('time[data-local]').forEach(function (t) {
      var d = new Date(t.dateTime);
      if (isNaN(d.getTime())) return;
      t.textContent = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: t.hasAttribute('data-seconds') ? 'medium' : 'short' });
      t.title = d.toISOString();
    });
  }

  // New token: the expiry field, preset to one year from now in local time, sent as UTC.
  function expiry() {
    var input = document.getElementById('expires-at');
    if (!input) return;
    var form = input.form;
    var iso = form.querySelector('input[name="expires_iso"]');
    var at = document.getElementById('expiry-at');
    if (input.dataset.preset === 'one-year') {
      var d = new Date();
      d.setFullYear(d.getFullYear() + 1);
      input.value = localValue(d);
    }
    var zone = document.getElementById('expires-zone');
    if (zone) {
      var tz = '';
      try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { tz = ''; }
      zone.textContent = 'Times are in your local time' + (tz ? ' (' + tz + ').' : '.');
    }
    input.addEventListener('focus', function () { at.checked = true; });
    input.addEventListener('input', function () { at.checked = true; });
    form.addEventListener('submit', function () {
      var when = input.value ? new Date(input.value) : null; // parsed as local time
      iso.value = when && !isNaN(when.getTime()) ? when.toISOString() : '';
    });
  }

  // Custom permissions: a resource's box ticks or unticks all of its actions, and shows
  // whether all, some (indeterminate) or none of them are ticked.
  function permissions() {
    document.querySelectorAll('fieldset.resource').forEach(function (group) {
      var box = group.querySelector('.resource-box');
      var actions = Array.prototype.slice.call(group.querySelectorAll('.action-box'));
      function update() {
        var n = actions.filter(function (a) { return a.checked; }).length;
        box.checked = n === actions.length;
        box.indeterminate = n > 0 && n < actions.length;
      }
      box.addEventListener('change', function () {
        actions.forEach(function (a) { a.checked = box.checked; });
        update();
      });
      actions.forEach(function (a) { a.addEventListener('change', update); });
      update();
    });
    // Ticking an action means the person wants a custom scope.
    var custom = document.getElementById('scope-custom');
    var panel = document.getElementById('custom-permissions');
    if (custom && panel) {
      panel.addEventListener('change', function () { custom.checked = true; });
    }
  }

  // The reveal dialog: shown once, closable only after the reader confirms they saved it.
  function reveal() {
    var dialog = document.getElementById('reveal');
    if (!dialog) return;
    var secret = document.getElementById('reveal-token');
    var saved = document.getElementById('reveal-saved');
    var close = document.getElementById('reveal-close');
    var status = document.getElementById('reveal-status');
    var leaving = false;

    function leave() {
      if (leaving) return;
      leaving = true;
      secret.value = '';
      // Replace this page in the history, so Back does not bring the token back.
      window.location.replace(close.dataset.href);
    }

    dialog.showModal();
    secret.focus();
    secret.select();
    // Escape does not close it before the box is ticked (and if the browser closes it
    // anyway, it opens again: the token must not vanish unconfirmed).
    dialog.addEventListener('cancel', function (e) { if (!saved.checked) e.preventDefault(); });
    dialog.addEventListener('close', function () {
      if (saved.checked) leave(); else dialog.showModal();
    });
    saved.addEventListener('change', function () { close.disabled = !saved.checked; });
    close.addEventListener('click', function () { if (saved.checked) dialog.close(); });

    document.getElementById('reveal-copy').addEventListener('click', function () {
      var text = secret.value;
      function copied() { status.textContent = 'Copied to the clipboard.'; }
      function fallback() {
        secret.focus();
        secret.select();
        var ok = false;
        try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
        status.textContent = ok ? 'Copied to the clipboard.' :
          'Could not copy: the token is selected, press Ctrl+C (⌘C) to copy it.';
      }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(copied, fallback);
      } else {
        fallback();
      }
    });

    document.getElementById('reveal-download').addEventListener('click', function () {
      var name = this.dataset.filename;
      var url = URL.createObjectURL(new Blob([secret.value + '\n'], { type: 'text/plain' }));
      var a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      status.textContent = 'Saved as ' + name + ' in your downloads.';
    });
  }

  // The list's active/inactive switches submit their form when flipped.
  function toggles() {
    document.querySelectorAll('.toggle-form .status-switch').forEach(function (sw) {
      sw.addEventListener('change', function () {
        sw.disabled = true;
        if (sw.form.requestSubmit) sw.form.requestSubmit(); else sw.form.submit();
      });
    });
  }

  function start() {
    localTimes();
    expiry();
    permissions();
    reveal();
    toggles();
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
