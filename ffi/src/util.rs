//! Stateless helpers around SQLite: statement completeness, SQLite's own number formatting and
//! the library version.

use std::ffi::{c_char, c_int, CStr, CString};

use libsqlite3_sys as sys;

/// True when `sql` ends with a complete SQL statement (`sqlite3_complete`): a terminating
/// semicolon that is not inside a string, comment or trigger body. Text after a NUL byte is
/// ignored, as the C function would.
pub fn complete(sql: &str) -> bool {
    let upto_nul = sql.split('\0').next().unwrap_or("");
    let Ok(c) = CString::new(upto_nul) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { sys::sqlite3_complete(c.as_ptr()) != 0 }
}

/// Formats `v` as SQLite's `printf("%!.20g")` does. The `sqlite3` shell prints REAL values
/// in dumps this way, so a dump made with this function matches its digits.
pub fn format_real_20g(v: f64) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is writable for its whole length, which we pass as the limit; the format
    // takes exactly one double argument, which we pass. snprintf always NUL-terminates.
    unsafe {
        sys::sqlite3_snprintf(
            buf.len() as c_int,
            buf.as_mut_ptr() as *mut c_char,
            c"%!.20g".as_ptr(),
            v,
        );
    }
    // SAFETY: sqlite3_snprintf wrote a NUL-terminated string into `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr() as *const c_char) }
        .to_string_lossy()
        .into_owned()
}

/// Like [`format_real_20g`], but writes into `buf` and returns the text, without allocating.
/// For hot loops such as the SQL dumper, which formats one REAL per value.
pub fn format_real_20g_into(v: f64, buf: &mut [u8; 64]) -> &str {
    // SAFETY: `buf` is writable for its whole length, which we pass as the limit; the format
    // takes exactly one double argument, which we pass. snprintf always NUL-terminates.
    unsafe {
        sys::sqlite3_snprintf(
            buf.len() as c_int,
            buf.as_mut_ptr() as *mut c_char,
            c"%!.20g".as_ptr(),
            v,
        );
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    // SQLite's %g writes only ASCII digits, signs, '.', 'e', "Inf" and "NaN".
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// The version of the linked SQLite library, e.g. "3.54.1".
pub fn sqlite_version() -> &'static str {
    // SAFETY: sqlite3_libversion returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::sqlite3_libversion()) }
        .to_str()
        .unwrap_or("unknown")
}
