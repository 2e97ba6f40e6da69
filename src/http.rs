//! Just enough HTTP/1.1 for hkrun's own listeners (`--metrics`, `--dashboard`): the
//! accept loop with a bound on connections held, one `GET` per connection, its head read
//! within a bound, and a response head.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// `listener`, bound by `start`, on the runtime.
pub fn listen(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Accepts connections for ever, each answered by `answer` on a task of its own, with at
/// most `at_once` held: the next waits in the kernel's backlog, so no client can take
/// hkrun's file descriptors (the dynos' pipes need them).
pub async fn serve<F, A>(listener: TcpListener, at_once: usize, answer: A)
where
    A: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(at_once));
    loop {
        let Ok(place) = Arc::clone(&places).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: let some close.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let answered = answer(stream);
        tokio::spawn(async move {
            answered.await;
            drop(place);
        });
    }
}

/// The longest request head taken.
const MAX_HEAD: usize = 8 * 1024;

/// A `GET` request's head, as far as hkrun's listeners need it.
#[derive(Debug, PartialEq, Eq)]
pub struct Get {
    /// The path, without the query.
    pub path: String,
    /// The `Host` header, if sent.
    pub host: Option<String>,
}

/// The `GET` request on `stream`, once its head has arrived; none for anything else.
pub async fn read_get(stream: &mut TcpStream) -> Option<Get> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_get(&head)
}

fn parse_get(head: &[u8]) -> Option<Get> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let path = match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => target.split('?').next()?.to_owned(),
        _ => return None,
    };
    let host = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned());
    Some(Get { path, host })
}

/// A response head for a body of `length` bytes, the connection closed after it.
pub fn head(status: &str, content_type: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_gives_its_path_and_host() {
        let got = parse_get(b"GET /events?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nA: b\r\n\r\n");
        assert_eq!(
            got,
            Some(Get {
                path: "/events".into(),
                host: Some("127.0.0.1:9".into())
            })
        );
        assert_eq!(parse_get(b"POST / HTTP/1.1\r\n\r\n"), None);
        let bare = parse_get(b"GET / HTTP/1.0\r\n\r\n").map(|g| g.host);
        assert_eq!(bare, Some(None));
    }
}
