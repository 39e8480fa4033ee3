//! How the shell prints: query results in rqlite's four modes, and JSON documents (`/status`,
//! `/nodes`, `/debug/vars`) as rqlite's key/value tree.
//!
//! Owns: the exact text. Values print as Go's `%v` prints the decoded JSON (so a NULL in
//! column mode is `<nil>`, as in rqlite; csv and line modes print `NULL`).
//! Does not own: where the text goes (`session.rs` picks stdout or the `.output` file).

use std::io::{self, Write};

use serde_json::{Map, Value};

use super::parse::Mode;

/// A query result's table: the column names and the rows, as the server sent them.
pub struct Table<'a> {
    pub columns: Vec<String>,
    pub values: &'a [Value],
}

impl Table<'_> {
    fn cell(&self, row: usize, col: usize) -> Option<&Value> {
        self.values.get(row)?.as_array()?.get(col)
    }

    fn rows(&self) -> usize {
        self.values.len()
    }
}

/// Writes `t` in `mode`.
pub fn write_table(w: &mut dyn Write, t: &Table<'_>, mode: Mode) -> io::Result<()> {
    match mode {
        Mode::Column => write_column(w, t),
        Mode::Csv => write_csv(w, t),
        Mode::Json => write_json(w, t),
        Mode::Line => write_line(w, t),
    }
}

/// Go's `%v` for a decoded JSON value.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn null_or_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "NULL".into(),
        Some(v) => go_value(v),
    }
}

/// rqlite's column mode: `+`/`-` borders, every row followed by a border, each column as wide
/// as its longest cell plus two.
fn write_column(w: &mut dyn Write, t: &Table<'_>) -> io::Result<()> {
    if t.columns.is_empty() {
        return Ok(());
    }
    let mut grid: Vec<Vec<String>> = vec![t.columns.clone()];
    for r in 0..t.rows() {
        grid.push(
            (0..t.columns.len())
                .map(|c| t.cell(r, c).map_or_else(|| "NULL".into(), go_value))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..t.columns.len())
        .map(|c| {
            grid.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
                + 2
        })
        .collect();
    let border: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(*w)))
        .collect::<String>()
        + "+\n";
    w.write_all(border.as_bytes())?;
    for row in &grid {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let pad = width - 1 - cell.chars().count();
            line.push_str("| ");
            line.push_str(cell);
            line.push_str(&" ".repeat(pad));
        }
        line.push_str("|\n");
        w.write_all(line.as_bytes())?;
        w.write_all(border.as_bytes())?;
    }
    Ok(())
}

/// Go's `encoding/csv`: quote a field holding a comma, a quote, CR or LF, or starting with
/// a space; double the quotes inside.
fn csv_field(f: &str) -> String {
    let needs = f == r"\."
        || f.contains([',', '"', '\r', '\n'])
        || f.chars().next().is_some_and(char::is_whitespace);
    if needs {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

fn write_csv(w: &mut dyn Write, t: &Table<'_>) -> io::Result<()> {
    let header: Vec<String> = t.columns.iter().map(|c| csv_field(c)).collect();
    writeln!(w, "{}", header.join(","))?;
    for r in 0..t.rows() {
        let row: Vec<String> = (0..t.columns.len())
            .map(|c| csv_field(&null_or_value(t.cell(r, c))))
            .collect();
        writeln!(w, "{}", row.join(","))?;
    }
    Ok(())
}

/// An array of row objects, keys sorted, two-space indent (Go's `MarshalIndent`).
fn write_json(w: &mut dyn Write, t: &Table<'_>) -> io::Result<()> {
    let rows: Vec<Value> = (0..t.rows())
        .map(|r| {
            let m: Map<String, Value> = t
                .columns
                .iter()
                .enumerate()
                .map(|(c, name)| (name.clone(), t.cell(r, c).cloned().unwrap_or(Value::Null)))
                .collect();
            Value::Object(m)
        })
        .collect();
    let text = serde_json::to_string_pretty(&rows).map_err(io::Error::other)?;
    writeln!(w, "{text}")
}

/// `name = value`, names right-aligned, a blank line between rows.
fn write_line(w: &mut dyn Write, t: &Table<'_>) -> io::Result<()> {
    let width = t.columns.iter().map(String::len).max().unwrap_or(0);
    for r in 0..t.rows() {
        if r > 0 {
            writeln!(w)?;
        }
        for (c, name) in t.columns.iter().enumerate() {
            writeln!(w, "{name:>width$} = {}", null_or_value(t.cell(r, c)))?;
        }
    }
    Ok(())
}

/// rqlite's key/value tree: keys sorted, nested objects as `key:` with children indented two
/// spaces, leaves as `key: value`, nulls skipped.
pub fn write_tree(w: &mut dyn Write, indent: usize, m: &Map<String, Value>) -> io::Result<()> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let pad = "  ".repeat(indent);
        match &m[k] {
            Value::Null => {}
            Value::Object(child) => {
                writeln!(w, "{pad}{k}:")?;
                write_tree(w, indent + 1, child)?;
            }
            v => writeln!(w, "{pad}{k}: {}", go_value(v))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(columns: &[&str], values: Value, mode: Mode) -> String {
        let values = values.as_array().cloned().unwrap_or_default();
        let t = Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values: &values,
        };
        let mut out = Vec::new();
        write_table(&mut out, &t, mode).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn column_mode_matches_rqlite() {
        let got = render(
            &["id", "name"],
            json!([[1, "fiona"], [2, null]]),
            Mode::Column,
        );
        assert_eq!(
            got,
            "+----+-------+\n| id | name  |\n+----+-------+\n| 1  | fiona |\n+----+-------+\n\
             | 2  | <nil> |\n+----+-------+\n"
        );
    }

    #[test]
    fn csv_json_and_line_modes() {
        let v = json!([[1, "a,b"], [2, null]]);
        assert_eq!(
            render(&["id", "n"], v.clone(), Mode::Csv),
            "id,n\n1,\"a,b\"\n2,NULL\n"
        );
        assert_eq!(
            render(&["id", "name"], v.clone(), Mode::Line),
            "  id = 1\nname = a,b\n\n  id = 2\nname = NULL\n"
        );
        assert_eq!(
            render(&["n", "id"], json!([[null, 1]]), Mode::Json),
            "[\n  {\n    \"id\": 1,\n    \"n\": null\n  }\n]\n"
        );
        assert_eq!(render(&["id"], json!([]), Mode::Json), "[]\n");
    }

    #[test]
    fn tree_sorts_nests_and_skips_nulls() {
        let m = json!({"b": {"y": 1, "x": [1, "a"]}, "a": "s", "z": null});
        let mut out = Vec::new();
        write_tree(&mut out, 0, m.as_object().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a: s\nb:\n  x: [1 a]\n  y: 1\n"
        );
    }
}
