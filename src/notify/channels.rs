//! Channels: email over SMTP (lettre, rustls), Slack incoming webhooks (Block Kit), Teams
//! Workflows webhooks (Adaptive Card), and JSON events signed the Standard Webhooks way.
//! Every connection has a timeout (the channel's `timeout`); no error names a URL or a
//! secret (chat webhook URLs and SMTP URLs carry credentials).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use super::Endpoint;
use super::config::{Channel, ChannelKind};
use super::events::{Event, SCHEMA};

/// Whether `host` is this machine (where plain SMTP and plain HTTP are allowed).
fn local(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a channel's URL as the environment gives it: `smtp://`/`smtps://` for email
/// (plain SMTP only to this machine: elsewhere STARTTLS is required), `https://` for the
/// others (`http://` only to this machine). The reason never repeats the URL.
pub fn check_url(channel: &Channel, raw: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw.trim()).map_err(|e| format!("the value is not a URL ({e})"))?;
    let host = u.host_str().unwrap_or("");
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    match (channel.kind, u.scheme()) {
        (ChannelKind::Email, "smtp" | "smtps") => Ok(u),
        (ChannelKind::Email, s) => Err(format!(
            "an email channel takes an smtp:// (STARTTLS) or smtps:// (implicit TLS) URL, not {s}://"
        )),
        (_, "https") => Ok(u),
        (_, "http") if local(host) => Ok(u),
        (_, "http") => Err("plain http:// is allowed only to this machine; use https://".into()),
        (_, s) => Err(format!(
            "a {} channel takes an https:// URL, not {s}://",
            channel.kind.as_str()
        )),
    }
}

/// The key of a Standard Webhooks secret: `whsec_` then base64.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").ok_or(
        "a webhook secret starts with whsec_ (then base64, as Standard Webhooks write it)",
    )?;
    match B64.decode(b64) {
        Ok(k) if k.len() >= 16 => Ok(k),
        Ok(_) => Err("the webhook secret is shorter than 16 bytes".into()),
        Err(_) => Err("the webhook secret after whsec_ is not base64".into()),
    }
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret, space-separated.
pub fn sign(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    for s in secrets {
        let key = secret_key(s)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        out.push(format!("v1,{}", B64.encode(mac.finalize().into_bytes())));
    }
    Ok(out.join(" "))
}

/// The webhook body of `event` (schema `chg.event/1`, README "Notifications").
pub fn webhook_body(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "schema": SCHEMA,
        "type": format!("chg.{}", event.kind.as_str()),
        "timestamp": event.at,
        "id": event.id,
        "commit": event.commit,
        "seq": event.seq,
        "data": event,
    })
}

/// Slack's text escaping: a title cannot mention `@channel` or forge a link.
fn slack_escape(s: &str) -> String {
    crate::text::one_line(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message (Block Kit) for `event`.
pub fn slack_body(event: &Event) -> serde_json::Value {
    let text = slack_escape(&event.headline());
    let mut blocks = vec![serde_json::json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": text},
    })];
    let mut context = format!(
        "{} · seq {} · commit {}",
        event.kind.as_str(),
        event.seq,
        &event.commit[..event.commit.len().min(12)]
    );
    if !event.exceptions.is_empty() {
        context.push_str(&format!(
            " · audit exceptions: {}",
            event.exceptions.join(", ")
        ));
    }
    blocks.push(serde_json::json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": slack_escape(&context)}],
    }));
    if let Some(url) = &event.url {
        blocks.push(serde_json::json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": format!("Open {}", event.change)},
                "url": url,
            }],
        }));
    }
    serde_json::json!({"text": text, "blocks": blocks})
}

/// Text for an Adaptive Card: one line, and no markdown link a title could forge (a zero
/// width space between `]` and `(`).
fn teams_text(s: &str) -> String {
    crate::text::one_line(s).replace("](", "]\u{200B}(")
}

/// A Slack message for `events`: the event's own message for one, a digest (one section per
/// event, each linking to its change) for several.
pub fn slack_message(events: &[Event]) -> serde_json::Value {
    if let [one] = events {
        return slack_body(one);
    }
    let text = format!("{} updates on changes", events.len());
    let mut blocks = vec![serde_json::json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{text}*")},
    })];
    for e in events {
        let line = slack_escape(&e.headline());
        let line = match &e.url {
            // The URL is base_url (checked) and a change id: nothing to escape.
            Some(u) => format!("<{u}|{}> {line}", e.change),
            None => line,
        };
        blocks
            .push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": line}}));
    }
    serde_json::json!({"text": text, "blocks": blocks})
}

/// A Teams message for `events`: one card, one block per event for several.
pub fn teams_message(events: &[Event]) -> serde_json::Value {
    if let [one] = events {
        return teams_body(one);
    }
    let mut body = vec![serde_json::json!({
        "type": "TextBlock",
        "text": format!("{} updates on changes", events.len()),
        "wrap": true,
        "weight": "Bolder",
    })];
    for e in events {
        let mut line = teams_text(&e.headline());
        if let Some(u) = &e.url {
            line.push_str(&format!(" [{}]({u})", e.change));
        }
        body.push(serde_json::json!({"type": "TextBlock", "text": line, "wrap": true}));
    }
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// A Teams Workflows message: one Adaptive Card for `event`.
pub fn teams_body(event: &Event) -> serde_json::Value {
    let mut facts = vec![
        serde_json::json!({"title": "Change", "value": event.change}),
        serde_json::json!({"title": "Status", "value": event.status}),
    ];
    if let Some(p) = &event.priority {
        facts.push(serde_json::json!({"title": "Priority", "value": p}));
    }
    if !event.awaiting.is_empty() {
        facts.push(serde_json::json!({"title": "Awaiting", "value": event.awaiting.join(", ")}));
    }
    let mut card = serde_json::json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": teams_text(&event.headline()), "wrap": true, "weight": "Bolder"},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(url) = &event.url {
        card["actions"] = serde_json::json!([
            {"type": "Action.OpenUrl", "title": format!("Open {}", event.change), "url": url}
        ]);
    }
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The mail of a digest: subject and plain-text body.
pub fn mail_text(events: &[Event]) -> (String, String) {
    let subject = match events {
        [one] => format!("[chg] {}", crate::text::one_line(&one.headline())),
        many => format!("[chg] {} updates on changes", many.len()),
    };
    let mut body = String::new();
    for e in events {
        body.push_str(&crate::text::one_line(&e.headline()));
        body.push('\n');
        if let Some(url) = &e.url {
            body.push_str(&format!("  {url}\n"));
        }
        body.push_str(&format!(
            "  event {} (seq {}, commit {})\n\n",
            e.id, e.seq, e.commit
        ));
    }
    body.push_str(
        "-- \nchg notify: you receive this because the change policy routes these events to you.\n",
    );
    (subject, body)
}

/// Sends `events` (one, or an email digest to `to`) through `channel`. `Err` says why, without the
/// URL or a secret.
pub fn send(
    channel: &Channel,
    endpoint: &Endpoint,
    to: &str,
    events: &[Event],
    now: Timestamp,
) -> Result<(), String> {
    let Some(raw) = &endpoint.url else {
        return Err(format!("{} is not set", channel.url_env));
    };
    let url = check_url(channel, raw).map_err(|why| format!("{}: {why}", channel.url_env))?;
    let timeout = Duration::from_secs(u64::try_from(channel.timeout.as_secs()).unwrap_or(10));
    let result = match channel.kind {
        ChannelKind::Email => send_mail(channel, &url, to, events, timeout),
        ChannelKind::Slack => post(&url, &[], &slack_message(events), timeout),
        ChannelKind::Teams => post(&url, &[], &teams_message(events), timeout),
        ChannelKind::Webhook => {
            if endpoint.secrets.is_empty() {
                return Err(format!(
                    "{} is not set: events are never sent unsigned",
                    channel.secret_env.as_deref().unwrap_or("secret_env")
                ));
            }
            let e = &events[0];
            let body = webhook_body(e);
            let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
            let ts = now.as_second();
            let sig = sign(&endpoint.secrets, &e.id, ts, &bytes)?;
            post_bytes(
                &url,
                &[
                    ("webhook-id", e.id.clone()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", sig),
                ],
                bytes,
                timeout,
            )
        }
    };
    result.map_err(|e| scrub(&e, raw))
}

/// `text` without the URL, its path or its password.
fn scrub(text: &str, raw: &str) -> String {
    let mut t = text.replace(raw, "<url>");
    if let Ok(u) = url::Url::parse(raw) {
        if let Some(p) = u.password() {
            t = t.replace(p, "<secret>");
        }
        if u.path().len() > 1 {
            t = t.replace(u.path(), "/<path>");
        }
    }
    t
}

fn post(
    url: &url::Url,
    headers: &[(&str, String)],
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    post_bytes(url, headers, bytes, timeout)
}

fn post_bytes(
    url: &url::Url,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("chg/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent
        .post(url.as_str())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send(&body[..]) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "the receiver answered HTTP {}",
            r.status().as_u16()
        )),
        Err(ureq::Error::Timeout(_)) => {
            Err(format!("no answer within {}s (timeout)", timeout.as_secs()))
        }
        Err(ureq::Error::Io(e)) => Err(format!("connection failed: {}", e.kind())),
        Err(e) => Err(format!("the request failed: {e}")),
    }
}

/// `%xx` decoded (URL user names and passwords).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn send_mail(
    channel: &Channel,
    url: &url::Url,
    to: &str,
    events: &[Event],
    timeout: Duration,
) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{SmtpTransport, Transport};
    let host = url.host_str().unwrap_or("");
    let mut builder = match url.scheme() {
        "smtps" => SmtpTransport::relay(host)
            .map_err(|e| format!("SMTP: {e}"))?
            .port(url.port().unwrap_or(465)),
        _ if local(host) => SmtpTransport::builder_dangerous(host).port(url.port().unwrap_or(25)),
        _ => SmtpTransport::starttls_relay(host)
            .map_err(|e| format!("SMTP: {e}"))?
            .port(url.port().unwrap_or(587)),
    };
    if !url.username().is_empty() {
        builder = builder.credentials(Credentials::new(
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or("")),
        ));
    }
    let mailer = builder.timeout(Some(timeout)).build();
    let from: Mailbox = channel
        .from
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|e| format!("the sender is not an address: {e}"))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("the recipient {to:?} is not an address: {e}"))?;
    let (subject, body) = mail_text(events);
    let msg = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("the mail cannot be built: {e}"))?;
    mailer
        .send(&msg)
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Duration as D;

    fn channel(kind: ChannelKind) -> Channel {
        Channel {
            name: "c".into(),
            kind,
            url_env: "X".into(),
            secret_env: None,
            from: None,
            timeout: D::from_secs(1),
        }
    }

    #[test]
    fn urls_are_checked_for_their_kind_and_plain_text_stays_on_this_machine() {
        let slack = channel(ChannelKind::Slack);
        assert!(check_url(&slack, "https://hooks.slack.com/services/T/B/X").is_ok());
        assert!(check_url(&slack, "http://127.0.0.1:9/x").is_ok());
        assert!(check_url(&slack, "http://[::1]:9/x").is_ok());
        let why = check_url(&slack, "http://hooks.example.com/T/B/secret").unwrap_err();
        assert!(!why.contains("secret"), "{why}");
        assert!(check_url(&slack, "smtp://mail.example.com").is_err());
        assert!(check_url(&slack, "not a url").is_err());
        let mail = channel(ChannelKind::Email);
        assert!(check_url(&mail, "smtps://u:p@mail.example.com").is_ok());
        assert!(check_url(&mail, "https://mail.example.com").is_err());
        assert!(!local("mail.example.com") && local("localhost") && local("127.0.0.1"));
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret_key("hunter2").is_err());
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn chat_text_cannot_ping_everyone_or_forge_links() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert!(!teams_text("[approve here](https://evil.example)").contains("]("));
    }
}
