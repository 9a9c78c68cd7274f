//! A throwaway PKI for TLS tests, made with the `openssl` command line tool (Debian's
//! `openssl`, installed by `cargo xtask test`): a CA, a server certificate for `127.0.0.1`
//! and `localhost` signed by it, a client certificate signed by it, and a second,
//! unrelated CA that trusts nothing here. EC P-256 keys, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one generated PKI (PEM), deleted on drop.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates everything in a new temporary directory.
    ///
    /// # Errors
    /// A message naming the `openssl` step that failed (or that it is not installed).
    pub fn generate() -> Result<TestPki, String> {
        let dir = tempfile::Builder::new()
            .prefix("pkgload-pki-")
            .tempdir()
            .map_err(|e| format!("creating the PKI directory: {e}"))?;
        let pki = TestPki { dir };
        pki.make_ca("ca")?;
        pki.make_ca("other-ca")?;
        pki.make_leaf(
            "server",
            "127.0.0.1",
            &[
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "extendedKeyUsage=serverAuth",
            ],
        )?;
        pki.make_leaf(
            "client",
            "pkgload-test-client",
            &["extendedKeyUsage=clientAuth"],
        )?;
        Ok(pki)
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.file("other-ca.pem")
    }

    /// The server's certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.file("server.pem"), self.file("server.key"))
    }

    /// The client's certificate and key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.file("client.pem"), self.file("client.key"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn make_ca(&self, name: &str) -> Result<(), String> {
        self.openssl(
            name,
            &[
                "req",
                "-x509",
                "-subj",
                &format!("/CN=pkgload test {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            name,
        )
    }

    fn make_leaf(&self, name: &str, common_name: &str, extensions: &[&str]) -> Result<(), String> {
        let ca = self.file("ca.pem");
        let ca_key = self.file("ca.key");
        let (ca, ca_key) = (ca.to_string_lossy(), ca_key.to_string_lossy());
        let subject = format!("/CN={common_name}");
        let mut args = vec![
            "req",
            "-x509",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ];
        for extension in extensions {
            args.extend(["-addext", extension]);
        }
        self.openssl(name, &args, name)
    }

    /// `openssl <args> -newkey ec (P-256) -nodes -days 2 -keyout <out>.key -out <out>.pem`.
    fn openssl(&self, what: &str, args: &[&str], out: &str) -> Result<(), String> {
        let output = Command::new("openssl")
            .args(args)
            .args([
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .arg("-keyout")
            .arg(self.file(&format!("{out}.key")))
            .arg("-out")
            .arg(self.file(&format!("{out}.pem")))
            .output()
            .map_err(|e| format!("running openssl for the {what} (is it installed?): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "openssl failed making the {what}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }
}
