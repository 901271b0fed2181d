//! Admin users: who they are and which passwords they may choose. Hashing
//! (argon2id) and the prompts of `createsuperuser` live in `admin::users`.

/// A user to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    /// Unique login name.
    pub username: String,
    /// Contact address (may be empty).
    pub email: String,
    /// The argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// Superusers may do everything in the admin panel.
    pub is_superuser: bool,
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Least zxcvbn score accepted: 3 of 4, "safely unguessable" (about 10^10
/// guesses), which holds against online guessing and slows an offline attack
/// on a leaked argon2id hash to a crawl.
pub const MIN_PASSWORD_SCORE: u8 = 3;

/// Checks a username: 1–150 characters of letters, digits and `@ . + - _` (Django's rule).
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_chars = username.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if username.is_empty() || username.chars().count() > 150 || !ok_chars {
        return Err("a username is 1 to 150 letters, digits and @ . + - _".into());
    }
    Ok(())
}

/// Every reason a password is too weak for this user; empty when it will do.
///
/// The rule: at least [`MIN_PASSWORD_CHARS`] characters, not containing the
/// username or the name part of the email, and rated at least
/// [`MIN_PASSWORD_SCORE`] by zxcvbn (Dropbox's strength estimator: common
/// passwords, dictionary words, names, dates, keyboard walks, repeats and
/// sequences, the username and email counted as known words).
pub fn password_problems(username: &str, email: &str, password: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        problems.push(format!("it is shorter than {MIN_PASSWORD_CHARS} characters"));
    }
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    let similar = |other: &str| !other.is_empty() && other.len() >= 3 && lower.contains(&other.to_lowercase());
    if similar(username) || similar(local) {
        problems.push("it contains the username or the email address".into());
    }
    let estimate = zxcvbn::zxcvbn(password, &[username, email, local]);
    if u8::from(estimate.score()) < MIN_PASSWORD_SCORE {
        let mut why = "it is too easy to guess".to_string();
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                why.push_str(&format!(" ({})", warning.to_string().trim_end_matches('.').to_lowercase()));
            }
            if let Some(tip) = feedback.suggestions().first() {
                why.push_str(&format!("; {}", tip.to_string().trim_end_matches('.').to_lowercase()));
            }
        }
        problems.push(why);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_every_reason() {
        assert!(password_problems("ada", "ada@example.com", "correct horse battery").is_empty());
        assert!(password_problems("ada", "", "short").iter().any(|p| p.contains("shorter than 10")));
        let numeric = password_problems("ada", "", "12345678901");
        assert!(numeric.iter().any(|p| p.contains("too easy to guess")), "{numeric:?}");
        let common = password_problems("ada", "", "Password123");
        assert!(common.iter().any(|p| p.contains("too easy to guess") && p.contains("common")), "{common:?}");
        let walk = password_problems("ada", "", "qwertyuiop12");
        assert!(walk.iter().any(|p| p.contains("too easy to guess")), "{walk:?}");
        assert!(password_problems("lovelace", "", "xxlovelace99").iter().any(|p| p.contains("username")));
        assert!(password_problems("a", "countess@example.com", "the countess rules")
            .iter()
            .any(|p| p.contains("email")));
    }

    #[test]
    fn usernames_follow_djangos_rule() {
        assert!(check_username("ada.lovelace+admin@x").is_ok());
        for bad in ["", "has space", "semi;colon", &"x".repeat(151)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }
}
