//! The embedded video player page (vanilla HTML, JS and CSS; no framework,
//! no build step, no external links), served on the public listener at `/`
//! with its assets under `/player/`.

/// One embedded file: its content type and bytes.
pub struct Asset {
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

/// The asset for a request path, if it is one of the player's.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body): (&'static str, &'static [u8]) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("player/index.html"),
        ),
        "/player/player.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("player/player.js"),
        ),
        "/player/player.css" => (
            "text/css; charset=utf-8",
            include_bytes!("player/player.css"),
        ),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
