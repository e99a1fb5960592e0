//! Interop with software nobody here wrote: curl as the client, nginx as the upstream.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use ringmesh_tests::*;

/// nginx on an ephemeral port answering `from-nginx` and echoing request bodies' length.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _scratch: Scratch,
}

impl Nginx {
    fn start() -> Self {
        let scratch = Scratch::new();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let d = scratch.path().display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log stderr warn;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen {addr};\n    \
             location / {{ return 200 \"from-nginx $request_method $http_host\\n\"; }}\n  }}\n}}\n"
        );
        let path = scratch.write("nginx.conf", conf);
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("-v")
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect("nginx is not installed: run .ci/run as root, or apt-get install nginx-light");
        let child = Command::new(nginx)
            .args(["-e", "stderr", "-p"])
            .arg(scratch.path())
            .arg("-c")
            .arg(&path)
            .spawn()
            .unwrap();
        // Ready when it accepts (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start listening"
            );
            std::thread::yield_now();
        }
        Self {
            child,
            addr,
            _scratch: scratch,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl_and_nginx_talk_through_meshd(driver: &str) {
    let nginx = Nginx::start();
    let echo = Upstream::start("echo").unwrap();
    let scratch = Scratch::new();
    let config = format!(
        "service web {{\n  port 80 http\n  endpoint {}\n}}\nservice echo {{\n  port 80 http\n  endpoint {}\n}}\n",
        nginx.addr,
        echo.addr()
    );
    let meshd = serve(&scratch, &config, driver, &[]);

    // curl → meshd → nginx, three requests on one curl connection.
    let url = format!("http://{}/", meshd.outbound);
    let output = Command::new("curl")
        .args(["-sS", "--fail", "-H", "Host: web", &url, &url, &url])
        .output()
        .expect("curl is not installed: run .ci/run as root, or apt-get install curl");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "from-nginx GET web\n".repeat(3)
    );

    // curl's own chunked upload (with Expect: 100-continue) round-trips through the echo upstream.
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let file = scratch.write("upload.bin", &body);
    let output = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-H",
            "Host: echo",
            "-H",
            "Transfer-Encoding: chunked",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/echo", meshd.outbound))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout == body,
        "curl got {} bytes back",
        output.stdout.len()
    );
}

on_both_drivers!(curl_and_nginx_talk_through_meshd);
