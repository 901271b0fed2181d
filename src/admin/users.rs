//! Admin users: password rules, argon2id hashing, and the prompts of
//! `the-eye createsuperuser`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub use crate::domain::user::{check_username, password_problems, NewUser, MIN_PASSWORD_CHARS};

fn argon2() -> Argon2<'static> {
    // OWASP's recommended argon2id parameters: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// True when `password` matches the stored PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Where `createsuperuser` asks its questions: the terminal, or a script in tests.
pub trait Prompter {
    /// Asks for a line of text.
    fn line(&mut self, question: &str) -> std::io::Result<String>;
    /// Asks for a secret without echoing it.
    fn secret(&mut self, question: &str) -> std::io::Result<String>;
    /// Tells the person something.
    fn say(&mut self, message: &str);
}

/// Asks for a username (unless given), an email (unless given) and a password
/// twice, as Django's `createsuperuser` does, asking again after each problem.
pub fn ask(
    prompt: &mut dyn Prompter,
    username: Option<String>,
    email: Option<String>,
) -> std::io::Result<(String, String, String)> {
    let username = match username {
        Some(u) => u,
        None => loop {
            let u = prompt.line("Username: ")?.trim().to_string();
            match check_username(&u) {
                Ok(()) => break u,
                Err(e) => prompt.say(&format!("Error: {e}.")),
            }
        },
    };
    let email = match email {
        Some(e) => e,
        None => prompt.line("Email address: ")?.trim().to_string(),
    };
    let password = ask_password(prompt, &username, &email)?;
    Ok((username, email, password))
}

/// Asks for a new password twice, until the two match and the rules accept it
/// (three tries).
pub fn ask_password(prompt: &mut dyn Prompter, username: &str, email: &str) -> std::io::Result<String> {
    for _ in 0..3 {
        let password = prompt.secret("Password: ")?;
        let again = prompt.secret("Password (again): ")?;
        if password != again {
            prompt.say("Error: your passwords didn't match.");
            continue;
        }
        let problems = password_problems(username, email, &password);
        if problems.is_empty() {
            return Ok(password);
        }
        prompt.say(&format!("This password is too weak: {}.", problems.join("; ")));
    }
    Err(std::io::Error::other("no acceptable password after three tries"))
}

/// The real terminal: lines from stdin, secrets without echo.
#[derive(Debug, Default)]
pub struct Terminal;

impl Prompter for Terminal {
    fn line(&mut self, question: &str) -> std::io::Result<String> {
        use std::io::Write;
        eprint!("{question}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no more input"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn secret(&mut self, question: &str) -> std::io::Result<String> {
        rpassword::prompt_password(question)
    }

    fn say(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt every time");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password("anything", "not a hash"));
    }

    struct Script(Vec<&'static str>, Vec<String>);

    impl Prompter for Script {
        fn line(&mut self, _: &str) -> std::io::Result<String> {
            Ok(self.0.remove(0).to_string())
        }
        fn secret(&mut self, _: &str) -> std::io::Result<String> {
            Ok(self.0.remove(0).to_string())
        }
        fn say(&mut self, message: &str) {
            self.1.push(message.to_string());
        }
    }

    #[test]
    fn prompts_ask_again_after_a_mismatch_or_a_weak_password() {
        let mut script = Script(
            vec![
                "bad name",
                "ada",
                "ada@example.com",
                "one password!",
                "another one!",
                "short",
                "short",
                "a long passphrase",
                "a long passphrase",
            ],
            vec![],
        );
        let (u, e, p) = ask(&mut script, None, None).unwrap();
        assert_eq!((u.as_str(), e.as_str(), p.as_str()), ("ada", "ada@example.com", "a long passphrase"));
        assert_eq!(script.1.len(), 3, "{:?}", script.1);
        assert!(script.1[1].contains("didn't match") && script.1[2].contains("too weak"));
    }

    #[test]
    fn three_bad_passwords_give_up() {
        let mut script = Script(vec!["a", "b", "c", "d", "e", "f"], vec![]);
        assert!(ask(&mut script, Some("ada".into()), Some(String::new())).is_err());
    }
}
