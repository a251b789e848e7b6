//! `merklog serve` over TLS as a process on SQLite, and the client commands
//! talking to it over https; `merklog cert-fingerprint`; the errors of the
//! TLS flags.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use merklog_proto::v1::{self, log_client::LogClient};
use merklog_sth::LogSigner;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Writes a CA, a server certificate for 127.0.0.1 and a client
/// certificate signed by that CA into `dir`; returns the paths by name.
fn write_pki(dir: &Path) -> impl Fn(&str) -> PathBuf + '_ {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans, usage) in [
        (
            "server",
            vec!["127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
    move |name| dir.join(name)
}

async fn merklog(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run merklog")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn serve_and_append_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pki(dir.path());
    let p = |name: &str| path(name).display().to_string();
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    std::fs::write(path("key.pem"), signer.to_pkcs8_pem()).unwrap();
    std::fs::write(path("pub.pem"), signer.public_key().pem()).unwrap();

    // The auth file grants the writer role to the client certificate.
    let fingerprint = merklog(&["cert-fingerprint", &p("client.pem"), "--name", "box"]).await;
    assert!(fingerprint.status.success(), "{}", text(&fingerprint));
    let printed = String::from_utf8(fingerprint.stdout).unwrap();
    let entry = &printed[printed.find("[[client]]").expect("an entry")..];
    assert!(entry.contains("cert_sha256 = \""), "{printed}");
    std::fs::write(path("auth.toml"), entry).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let log = std::fs::File::create(path("server.log")).unwrap();
    let _server = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &format!("sqlite://{}", p("log.db"))])
        .args(["--key", &p("key.pem"), "--auth-file", &p("auth.toml")])
        .args([
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server-key.pem"),
        ])
        .args(["--tls-client-ca", &p("ca.pem")])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    wait_ready(&url, &path).await;

    let client_flags = [
        "--server",
        &url,
        "--public-key",
        &p("pub.pem"),
        "--tls-ca",
        &p("ca.pem"),
    ];
    let mtls = [
        "--tls-cert",
        &p("client.pem"),
        "--tls-key",
        &p("client-key.pem"),
    ];
    let appended =
        merklog(&[&["append", "--json"][..], &client_flags, &mtls, &["hello"]].concat()).await;
    assert!(appended.status.success(), "{}", text(&appended));
    let receipt: serde_json::Value = serde_json::from_slice(&appended.stdout).unwrap();
    assert_eq!(receipt["tree_head"]["tree_size"], 1, "{receipt}");

    // The monitor takes the same TLS flags as every other client command.
    let state = p("monitor-state.json");
    let monitored = merklog(
        &[
            &["monitor", "--once", "--json", "--state", &state][..],
            &client_flags,
            &mtls,
        ]
        .concat(),
    )
    .await;
    assert!(monitored.status.success(), "{}", text(&monitored));
    let step: serde_json::Value = serde_json::from_slice(&monitored.stdout).unwrap();
    assert_eq!(step["tree_head"]["tree_size"], 1, "{step}");

    // Without its certificate the client is refused by the TLS layer (the
    // alert's name, or a broken pipe, reset or closed connection when the
    // client was already writing, or hyper's "connection was not ready"
    // when the connection closed before the request went out:
    // TLS 1.3 refuses client certificates after the client's handshake).
    let refused = merklog(&[&["sth"][..], &client_flags].concat()).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        [
            "CertificateRequired",
            "broken pipe",
            "reset",
            "connection closed",
            "connection was not ready"
        ]
        .iter()
        .any(|cause| text(&refused).contains(cause)),
        "{}",
        text(&refused)
    );
}

/// Waits until the server answers over mutual TLS.
async fn wait_ready(url: &str, path: &impl Fn(&str) -> PathBuf) {
    let read = |name: &str| std::fs::read(path(name)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(tonic::transport::Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ));
    let endpoint = Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        // A server that accepts and never answers fails the test, not hangs it.
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    for _ in 0..300 {
        if let Ok(channel) = endpoint.connect().await {
            let answered = LogClient::new(channel)
                .get_log_info(v1::GetLogInfoRequest {})
                .await;
            if answered.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "merklog serve did not become ready over TLS:\n{}",
        std::fs::read_to_string(path("server.log")).unwrap_or_default()
    );
}

#[tokio::test]
async fn tls_flags_that_cannot_work_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pki(dir.path());
    let p = |name: &str| path(name).display().to_string();
    let db = format!("sqlite://{}", p("log.db"));
    let key = p("key.pem");
    std::fs::write(
        &key,
        LogSigner::generate(&mut rand_core::OsRng).to_pkcs8_pem(),
    )
    .unwrap();
    let serve = |extra: &'static [&'static str], more: Vec<String>| {
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
            "--key",
            &key,
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.extend(more);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            merklog(&args).await
        }
    };

    let half = serve(&["--tls-cert"], vec![p("server.pem")]).await;
    assert!(!half.status.success());
    assert!(text(&half).contains("--tls-key"), "{}", text(&half));

    let missing = serve(
        &[],
        vec![
            "--tls-cert".into(),
            p("nope.pem"),
            "--tls-key".into(),
            p("server-key.pem"),
        ],
    )
    .await;
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("cannot read the TLS certificate file"),
        "{}",
        text(&missing)
    );

    // A certificate where the key should be.
    let swapped = serve(
        &[],
        vec![
            "--tls-cert".into(),
            p("server.pem"),
            "--tls-key".into(),
            p("server.pem"),
        ],
    )
    .await;
    assert!(!swapped.status.success());
    assert!(text(&swapped).contains("private key"), "{}", text(&swapped));
}
