//! `/saml/auth` behind a real nginx using `auth_request`, configured from the
//! example in `config/nginx-auth-request.conf`.

mod support;

use std::process::{Child, Command, Stdio};

use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{
    alice, config_toml, free_port, get, program, unix_now, wait_for_port, Keys, Samlgate,
};

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn nginx_auth_request_passes_only_sessions_and_carries_the_identity() {
    let Some(nginx) = program("nginx", &["/usr/sbin/nginx"]) else {
        return;
    };
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    let port = free_port();
    let server = std::fs::read_to_string("config/nginx-auth-request.conf")
        .unwrap()
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8080", &gate.addr.to_string())
        .replace("127.0.0.1:3000", &panel.addr.to_string());
    let dir = keys.dir.path();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log;\nevents {{}}\nhttp {{\naccess_log off;\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         {server}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let _nginx = Nginx(
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let front = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(front).await;

    let denied = get(front, "/reports?x=1", "Accept: text/html\r\n").await;
    assert_eq!(denied.status, 302);
    assert_eq!(
        denied.header("location"),
        Some("/saml/login?return_to=/reports?x=1")
    );
    assert!(panel
        .seen()
        .iter()
        .all(|s| !s.path_and_query.starts_with("/reports")));

    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    let allowed = get(
        front,
        "/reports?x=1",
        &format!("Cookie: samlgate_session={cookie}\r\nX-Samlgate-Assertion: forged\r\n"),
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let seen = panel.last("/reports");
    let token = seen.header("x-samlgate-assertion").unwrap();
    assert_ne!(token, "forged");
    assert_eq!(token.split('.').count(), 3, "a compact JWS");

    let jwks = get(front, "/saml/jwks.json", "").await;
    assert_eq!(jwks.status, 200);
    assert!(jwks.json()["keys"].as_array().unwrap().len() == 1);
}
