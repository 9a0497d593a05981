//! Reading chg's trailers back from commit messages (SPEC section 6).

/// The trailers of a commit message, in order.
pub fn trailers(message: &str) -> Vec<(String, String)> {
    match git2::message_trailers_strs(message) {
        Ok(t) => t
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}
