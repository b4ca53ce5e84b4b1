//! The one builder of the store's filtered reads: a `SELECT` whose filters are each one
//! `AND` clause with its bound values, newest row first, limited.

use rusqlite::types::Value;

/// A query being built: its SQL so far and the values bound to its `?`s, in order.
pub(crate) struct Filtered {
    sql: String,
    args: Vec<Value>,
}

impl Filtered {
    /// `select` is everything up to the filters (`SELECT ... FROM table AS t`).
    pub(crate) fn new(select: &str) -> Self {
        Filtered {
            sql: format!("{select} WHERE 1"),
            args: Vec::new(),
        }
    }

    /// Adds `AND clause`, binding `values` to its `?`s.
    pub(crate) fn and(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
        self.args.extend(values);
    }

    /// Ends the query: newest `id_column` first, at most `limit` rows.
    pub(crate) fn newest_first(mut self, id_column: &str, limit: usize) -> (String, Vec<Value>) {
        self.sql
            .push_str(&format!(" ORDER BY {id_column} DESC LIMIT ?"));
        self.args
            .push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        (self.sql, self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_is_one_clause_with_its_values_in_order() {
        let mut q = Filtered::new("SELECT id FROM t");
        q.and("a = ?", [Value::Integer(1)]);
        q.and(
            "(b = ? OR c = ?)",
            [Value::Text("x".into()), Value::Text("x".into())],
        );
        let (sql, args) = q.newest_first("id", 50);
        assert_eq!(
            sql,
            "SELECT id FROM t WHERE 1 AND a = ? AND (b = ? OR c = ?) ORDER BY id DESC LIMIT ?"
        );
        assert_eq!(
            args,
            [
                Value::Integer(1),
                Value::Text("x".into()),
                Value::Text("x".into()),
                Value::Integer(50)
            ]
        );
    }
}
