//! `GET /internal/ui` (SPEC 7.4): the status page, one self-contained HTML file
//! (`src/ui/index.html`, inline CSS and JS, no external assets and no build step) embedded in
//! the binary.
//!
//! The page reads `/internal/status/endpoints` and `/internal/status/models`, and follows
//! `/internal/events` with `fetch` (which, unlike `EventSource`, can send the token). The
//! page itself holds no data, so the token guard lets it through (`auth.rs`); with
//! `internal_token` set it asks for the token when a read answers 401 and keeps it in memory.

use actix_web::{web, HttpResponse};

/// The page, as shipped.
pub const PAGE: &str = include_str!("ui/index.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/ui", web::get().to(page));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        // Inline code only, talking to this origin only: nothing from elsewhere can run in
        // a page that holds the token, and no other site can frame it.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_keeps_the_token_out_of_storage_and_urls() {
        for banned in [
            "http://",
            "https://",
            "src=",
            "localStorage",
            "sessionStorage",
            "EventSource",
            "document.cookie",
            "?token",
        ] {
            // The SVG namespace is a name, not a fetch.
            let page = PAGE.replace("http://www.w3.org/2000/svg", "");
            assert!(!page.contains(banned), "the page contains {banned:?}");
        }
        assert!(PAGE.contains("prefers-color-scheme: dark"));
        assert!(PAGE.contains("name=\"viewport\""));
    }
}
