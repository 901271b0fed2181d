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

/// Passwords that are too common to allow whatever their length (a short list
/// in the spirit of Django's CommonPasswordValidator).
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "1q2w3e4r5t",
    "iloveyou123",
    "administrator",
    "letmein123",
    "welcome123",
    "passw0rd123",
    "adminadmin",
    "changeme123",
    "qwerty12345",
];

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Checks a username: 1–150 characters of letters, digits and `@ . + - _` (Django's rule).
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_chars = username.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if username.is_empty() || username.chars().count() > 150 || !ok_chars {
        return Err("a username is 1 to 150 letters, digits and @ . + - _".into());
    }
    Ok(())
}

/// Every reason a password is too weak for this user; empty when it will do.
pub fn password_problems(username: &str, email: &str, password: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        problems.push(format!("it is shorter than {MIN_PASSWORD_CHARS} characters"));
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        problems.push("it is entirely numeric".into());
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        problems.push("it is a commonly used password".into());
    }
    let similar = |other: &str| !other.is_empty() && other.len() >= 3 && lower.contains(&other.to_lowercase());
    if similar(username) || similar(email.split('@').next().unwrap_or("")) {
        problems.push("it contains the username or the email address".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_every_reason() {
        assert!(password_problems("ada", "ada@example.com", "correct horse battery").is_empty());
        assert_eq!(password_problems("ada", "", "short").len(), 1);
        let numeric = password_problems("ada", "", "12345678901");
        assert!(numeric.iter().any(|p| p.contains("numeric")));
        assert!(password_problems("ada", "", "Password123").iter().any(|p| p.contains("common")));
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
