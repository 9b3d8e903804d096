//! Where the lake lives: a local directory (the embedded default) or a
//! prefix in object storage (`s3://bucket/prefix`). Each table is a Delta
//! table under it, `<lake>/<table>/` with its `_delta_log/`.
//!
//! S3 takes the usual AWS settings from the environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` for a local test server, and the
//! credential chain): the lake passes nothing of its own, so a deployment
//! configures it the way it configures any AWS client.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;

use url::Url;

use crate::error::{Error, Result};

/// A lake's root.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    root: Url,
}

/// URL schemes the lake writes to.
const SCHEMES: &[&str] = &["file", "s3", "s3a"];

impl Location {
    /// `s3://bucket/prefix`, `file:///dir`, or a path (relative to the
    /// working directory). A local directory is created if missing.
    pub fn parse(lake: &str) -> Result<Location> {
        let invalid = |problem: String| Error::Location {
            location: redact(lake),
            problem,
        };
        let root = match Url::parse(lake) {
            // One letter before `:` is a Windows drive, not a scheme.
            Ok(url) if url.scheme().len() > 1 => url,
            _ => return Location::local(Path::new(lake)),
        };
        if !SCHEMES.contains(&root.scheme()) {
            return Err(invalid(format!(
                "the scheme `{}` is not supported (use a path, file:// or s3://)",
                root.scheme()
            )));
        }
        if root.scheme() == "file" {
            let path = root
                .to_file_path()
                .map_err(|()| invalid("not a local path".into()))?;
            return Location::local(&path);
        }
        if root.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it names no bucket".into()));
        }
        if !root.username().is_empty() || root.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL; use the AWS credential chain".into(),
            ));
        }
        Ok(Location {
            root: with_trailing_slash(root),
        })
    }

    /// A local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Location> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        let root = Url::from_directory_path(&dir).map_err(|()| Error::Location {
            location: dir.display().to_string(),
            problem: "not an absolute path".into(),
        })?;
        Ok(Location { root })
    }

    /// The root, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.root
    }

    /// The directory, when the lake is on the local disk.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.root.scheme() == "file")
            .then(|| self.root.to_file_path().ok())
            .flatten()
    }

    /// An object store rooted at `<lake>/<prefix>/`, for what the lake
    /// keeps beside its tables (detector checkpoints).
    pub fn store(&self, prefix: &str) -> Result<Arc<dyn ObjectStore>> {
        let url = self
            .root
            .join(&format!("{}/", prefix.trim_matches('/')))
            .map_err(|e| Error::Location {
                location: self.to_string(),
                problem: format!("`{prefix}` is not a relative path: {e}"),
            })?;
        if let Some(dir) = self.local_dir() {
            let dir = dir.join(prefix);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        deltalake::logstore::store_for(&url, std::iter::empty::<(String, String)>()).map_err(|e| {
            Error::Delta {
                table: prefix.to_owned(),
                context: "opening its store".into(),
                source: Box::new(e),
            }
        })
    }

    /// A store rooted at the lake's root, its paths relative to it. Unlike
    /// [`Location::store`] it creates nothing: readers stay read-only.
    pub fn root_store(&self) -> Result<Arc<dyn ObjectStore>> {
        deltalake::logstore::store_for(&self.root, std::iter::empty::<(String, String)>()).map_err(
            |e| Error::Delta {
                table: self.to_string(),
                context: "opening the lake's store".into(),
                source: Box::new(e),
            },
        )
    }

    /// The path of an object relative to the lake's root, from the path its
    /// object store knows it by (relative to the bucket, or to the
    /// filesystem's root, as DataFusion's file scans name files), or `None`
    /// when it lies outside the lake. Both are compared percent-decoded.
    pub fn relative(&self, object_path: &str) -> Option<String> {
        let root = percent_decode(self.root.path().trim_start_matches('/'));
        let object = percent_decode(object_path.trim_start_matches('/'));
        object
            .strip_prefix(&root)
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned)
    }

    /// Where the table `name` lives, ending in `/`.
    pub fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("a table name is a plain relative path")
    }
}

/// `%XX` escapes decoded (as URLs and object-store paths escape bytes).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// The location as given, without anything that looks like a credential.
fn redact(lake: &str) -> String {
    match Url::parse(lake) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => lake.to_owned(),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local_dir() {
            Some(dir) => write!(f, "{}", dir.display()),
            None => write!(f, "{}", self.root),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_becomes_a_local_directory_url() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let location = Location::parse(lake.to_str().unwrap()).unwrap();
        assert!(lake.is_dir(), "created");
        assert_eq!(location.local_dir().unwrap(), lake.canonicalize().unwrap());
        let events = location.table_url("events");
        assert!(events.as_str().starts_with("file://"));
        assert!(events.as_str().ends_with("/lake/events/"));
    }

    #[test]
    fn an_s3_prefix_names_each_table_below_it() {
        let location = Location::parse("s3://audit/tooltrail").unwrap();
        assert_eq!(location.local_dir(), None);
        assert_eq!(
            location.table_url("events").as_str(),
            "s3://audit/tooltrail/events/"
        );
        assert_eq!(location.to_string(), "s3://audit/tooltrail/");
    }

    #[test]
    fn an_object_path_is_named_relative_to_the_lake_and_only_inside_it() {
        let location = Location::parse("s3://audit/tool%20trail").unwrap();
        assert_eq!(
            location.relative("tool%20trail/events/dt=2026-11-22/part-1.parquet"),
            Some("events/dt=2026-11-22/part-1.parquet".to_owned())
        );
        assert_eq!(location.relative("other/events/part-1.parquet"), None);
        assert_eq!(location.relative("tool trail/"), None);
        let dir = tempfile::tempdir().unwrap();
        let local = Location::local(dir.path()).unwrap();
        let root = local.local_dir().unwrap();
        let file = root.join("events/part-2.parquet");
        let object = file.to_str().unwrap().trim_start_matches('/');
        assert_eq!(
            local.relative(object),
            Some("events/part-2.parquet".to_owned())
        );
    }

    #[test]
    fn names_what_is_wrong_without_repeating_a_credential() {
        let err = Location::parse("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("scheme `gs`"), "{err}");
        let err = Location::parse("s3:///x").unwrap_err().to_string();
        assert!(err.contains("no bucket"), "{err}");
        let err = Location::parse("s3://AKIAEXAMPLE:hunter2@bucket/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("credential chain"), "{err}");
        assert!(
            !err.contains("hunter2") && !err.contains("AKIAEXAMPLE"),
            "{err}"
        );
    }
}
