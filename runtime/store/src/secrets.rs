//! Secrets the node holds for its apps: `secrets/APP/NAME`, one file per
//! secret, written atomically with mode 0600 in directories of mode 0700,
//! apart from the app's versions (a rollback never brings an old secret
//! back, and a version's files never hold one). Values are only ever read
//! to serve them to the app's handlers; listings give names.

use crate::{AppName, AppStore, StoreError, io_error, sync_dir, write_atomic_mode};
use std::fs;
use std::path::{Path, PathBuf};

/// The name of a variable or a secret, checked: it becomes a file name and
/// a `wasi:config` key, so it is 1 to 64 lowercase letters, digits and
/// underscores, starting with a letter (the rule Spin's variables follow).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarName(String);

impl VarName {
    /// `name`, if it is a valid variable name; the error says what one is.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            let shown: String = name.chars().take(80).collect();
            Err(StoreError::Invalid(format!(
                "{shown:?} is not a valid variable or secret name: use 1 to 64 lowercase letters, digits and underscores, starting with a letter"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VarName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AppStore {
    /// Sets secret `name` of `app` to `value`, replacing any earlier one.
    pub fn put_secret(
        &self,
        app: &AppName,
        name: &VarName,
        value: &[u8],
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = self.app_secrets_dir(app);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(format!("cannot create {}", dir.display())))?;
        write_atomic_mode(&dir.join(name.as_str()), value, "secret", 0o600)
    }

    /// Deletes secret `name` of `app`. False if there was none.
    pub fn delete_secret(&self, app: &AppName, name: &VarName) -> Result<bool, StoreError> {
        let dir = self.app_secrets_dir(app);
        let path = dir.join(name.as_str());
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir).map(|()| true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error(format!("cannot delete {}", path.display()))(err)),
        }
    }

    /// The names of `app`'s secrets, sorted. (Temp files of interrupted
    /// writes start with a dot: not names.)
    pub fn secret_names(&self, app: &AppName) -> Result<Vec<VarName>, StoreError> {
        names_in(&self.app_secrets_dir(app), |name| VarName::parse(name).ok())
    }

    /// `app`'s secrets with their values, sorted by name.
    pub fn secrets(&self, app: &AppName) -> Result<Vec<(VarName, String)>, StoreError> {
        let dir = self.app_secrets_dir(app);
        self.secret_names(app)?
            .into_iter()
            .map(|name| {
                let path = dir.join(name.as_str());
                let value =
                    fs::read(&path).map_err(io_error(format!("cannot read {}", path.display())))?;
                let value = String::from_utf8(value).map_err(|_| {
                    StoreError::Invalid(format!("{} is not UTF-8 text", path.display()))
                })?;
                Ok((name, value))
            })
            .collect()
    }

    /// The apps holding secrets, deployed or not (a secret may be set
    /// before the app's first deploy).
    pub fn apps_with_secrets(&self) -> Result<Vec<AppName>, StoreError> {
        names_in(&self.root.join("secrets"), |name| AppName::parse(name).ok())
    }

    /// Removes every secret of `app`.
    pub(crate) fn delete_secrets(&self, app: &AppName) -> Result<(), StoreError> {
        let dir = self.app_secrets_dir(app);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(format!("cannot remove {}", dir.display()))(err)),
        }
    }

    fn app_secrets_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("secrets").join(app.as_str())
    }
}

/// The entries of `dir` whose names `parse` accepts, sorted; none if
/// `dir` does not exist.
fn names_in<T: Ord>(dir: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, StoreError> {
    let listing_error = || io_error(format!("cannot list {}", dir.display()));
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(listing_error()(err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(listing_error())?;
        names.extend(parse(&entry.file_name().to_string_lossy()));
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secrets_are_kept_private_listed_by_name_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = AppStore::open(dir.path()).unwrap();
        let app = AppName::parse("shop").unwrap();
        let key = VarName::parse("api_key").unwrap();
        store.put_secret(&app, &key, b"one").unwrap();
        store.put_secret(&app, &key, b"two").unwrap();
        assert_eq!(
            store.secret_names(&app).unwrap(),
            std::slice::from_ref(&key)
        );
        assert_eq!(
            store.secrets(&app).unwrap(),
            [(key.clone(), "two".to_owned())]
        );
        let path = dir.path().join("secrets/shop/api_key");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(store.delete_secret(&app, &key).unwrap());
        assert!(!store.delete_secret(&app, &key).unwrap());
        assert!(store.secrets(&app).unwrap().is_empty());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "API_KEY", "1st", "a-b", "../x", &"a".repeat(65)] {
            assert!(VarName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VarName::parse("db_url2").is_ok());
    }
}
