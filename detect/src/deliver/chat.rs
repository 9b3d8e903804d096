//! Chat messages for an alert: a Slack Block Kit message and a Microsoft Teams
//! Adaptive Card, both carrying the same facts.
//!
//! Titles, explanations, ids and the SQL may quote values that agents chose
//! (tool names, resources), so nothing user-controlled is allowed to become
//! markup: Slack's `&`, `<`, `>` are escaped (no links, no `@channel`), and in
//! Teams a Markdown link's `](` is broken with a zero-width space.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::alert::{Alert, Severity};

/// At most this many sample event ids are listed in a chat message.
const MAX_LISTED_EVENTS: usize = 10;
/// Slack caps header text at 150 characters and section text at 3000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;

pub(super) fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "\u{2139}\u{fe0f}",    // information
        Severity::Medium => "\u{26a0}\u{fe0f}", // warning sign
        Severity::High => "\u{1f6a8}",          // rotating light
        Severity::Critical => "\u{1f525}",      // fire
    }
}

fn headline(alert: &Alert) -> String {
    format!(
        "{} {} alert: {}@{}",
        emoji(alert.severity),
        alert.severity.as_str().to_uppercase(),
        alert.user_id,
        alert.tenant_id
    )
}

fn window(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    if start.date_naive() == end.date_naive() {
        format!(
            "{} \u{2013} {} UTC",
            start.format("%Y-%m-%d %H:%M:%S"),
            end.format("%H:%M:%S")
        )
    } else {
        format!(
            "{} \u{2013} {} UTC",
            start.format("%Y-%m-%d %H:%M:%S"),
            end.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

/// Where the console shows the alert.
pub fn console_link(console_url: &str, alert_id: &str) -> String {
    format!("{}/alerts/{alert_id}", console_url.trim_end_matches('/'))
}

fn sample_events(alert: &Alert, quote: impl Fn(&str) -> String) -> Option<String> {
    let ids = &alert.evidence.event_ids;
    if ids.is_empty() {
        return None;
    }
    let mut listed: Vec<String> = ids
        .iter()
        .take(MAX_LISTED_EVENTS)
        .map(|id| quote(id))
        .collect();
    if ids.len() > MAX_LISTED_EVENTS {
        listed.push(format!("and {} more", ids.len() - MAX_LISTED_EVENTS));
    }
    Some(listed.join(", "))
}

/// Cuts `s` to at most `max` characters, marking the cut with an ellipsis.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('\u{2026}');
    out
}

/// Slack mrkdwn escaping: with `&`, `<`, `>` escaped nothing becomes a link
/// or a mention.
pub(super) fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A preformatted block whose text Slack shows verbatim: rich text is not
/// parsed as mrkdwn, so nothing in it needs escaping or can end it early,
/// and what is copied is exactly `s`.
fn slack_preformatted(s: &str) -> Value {
    json!({
        "type": "rich_text",
        "elements": [{
            "type": "rich_text_preformatted",
            "elements": [{"type": "text", "text": truncate(s, SLACK_TEXT_MAX)}],
        }],
    })
}

/// A Slack Block Kit message for an incoming webhook.
pub fn slack_message(alert: &Alert, console_url: Option<&str>) -> Value {
    let e = slack_escape;
    let field = |label: &str, value: String| json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), 2000)});
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&headline(alert), SLACK_HEADER_MAX), "emoji": true},
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*{}*\n{}", e(&alert.title), e(&alert.explanation)), SLACK_TEXT_MAX)},
        }),
        json!({
            "type": "section",
            "fields": [
                field("Detector", format!("`{}`", alert.detector)),
                field("Score", format!("{}/100", alert.score)),
                field("Window", window(alert.window_start, alert.window_end)),
                field("Alert id", format!("`{}`", e(&alert.alert_id))),
            ],
        }),
    ];
    if let Some(events) = sample_events(alert, |id| format!("`{}`", e(id).replace('`', "'"))) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*Sample events*\n{events}"), SLACK_TEXT_MAX)},
        }));
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*Investigate*"},
    }));
    blocks.push(slack_preformatted(&alert.investigation_sql()));
    if let Some(base) = console_url {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "action_id": "open_alert",
                "text": {"type": "plain_text", "text": "Open in console"},
                "url": console_link(base, &alert.alert_id),
            }],
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("tooltrail \u{b7} {} \u{b7} {}", alert.detector, tooltrail_schemas::format_time(&alert.time))}],
    }));
    json!({
        "text": truncate(
            &format!(
                "{} [{}] {} ({}@{}, {}, score {})",
                emoji(alert.severity),
                alert.severity.as_str().to_uppercase(),
                e(&alert.title),
                e(&alert.user_id),
                e(&alert.tenant_id),
                alert.detector,
                alert.score
            ),
            SLACK_TEXT_MAX,
        ),
        "blocks": blocks,
    })
}

/// Teams text: a Markdown link's `](` is broken so it renders as text.
pub(super) fn teams_text(s: &str) -> String {
    s.replace("](", "]\u{200b}(")
}

/// A Teams message with one Adaptive Card (1.4), for an incoming webhook or a
/// Workflows "post to a channel when a webhook request is received" URL.
pub fn teams_message(alert: &Alert, console_url: Option<&str>) -> Value {
    let t = teams_text;
    let color = match alert.severity {
        Severity::Low => "Default",
        Severity::Medium => "Warning",
        Severity::High | Severity::Critical => "Attention",
    };
    let fact = |title: &str, value: String| json!({"title": title, "value": t(&value)});
    let mut body = vec![
        json!({"type": "TextBlock", "text": t(&headline(alert)), "size": "Large", "weight": "Bolder", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": t(&alert.title), "weight": "Bolder", "wrap": true}),
        json!({"type": "TextBlock", "text": t(&alert.explanation), "wrap": true}),
        json!({
            "type": "FactSet",
            "facts": [
                fact("Detector", alert.detector.to_string()),
                fact("Score", format!("{}/100", alert.score)),
                fact("Window", window(alert.window_start, alert.window_end)),
                fact("User", format!("{}@{}", alert.user_id, alert.tenant_id)),
                fact("Alert id", alert.alert_id.clone()),
            ],
        }),
    ];
    if let Some(events) = sample_events(alert, str::to_owned) {
        body.push(json!({"type": "TextBlock", "text": "Sample events", "weight": "Bolder", "spacing": "Medium"}));
        body.push(
            json!({"type": "TextBlock", "text": t(&events), "fontType": "Monospace", "wrap": true}),
        );
    }
    body.push(json!({"type": "TextBlock", "text": "Investigate", "weight": "Bolder", "spacing": "Medium"}));
    // A code block: Teams shows its text verbatim (no Markdown), so the SQL
    // copied from it is the SQL. A client without CodeBlock shows the
    // fallback, guarded like any other text.
    let sql = alert.investigation_sql();
    body.push(json!({
        "type": "CodeBlock",
        "codeSnippet": sql,
        "language": "SQL",
        "fallback": {"type": "TextBlock", "text": t(&sql), "fontType": "Monospace", "wrap": true},
    }));
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    });
    if let Some(base) = console_url {
        card["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": "Open in console",
            "url": console_link(base, &alert.alert_id),
        }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::test_alert;

    #[test]
    fn slack_message_has_header_fields_sql_and_button() {
        let alert = test_alert();
        let msg = slack_message(&alert, Some("https://console.example.com/"));
        let blocks = msg["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        let header = blocks[0]["text"]["text"].as_str().expect("header text");
        assert!(
            header.starts_with("\u{1f6a8} HIGH alert: alice@acme"),
            "{header}"
        );
        let fields = blocks[2]["fields"].as_array().expect("fields");
        assert_eq!(fields[0]["text"], "*Detector*\n`denial_spike`");
        assert_eq!(fields[1]["text"], "*Score*\n91/100");
        assert_eq!(
            fields[2]["text"],
            "*Window*\n2026-10-20 09:35:00 \u{2013} 09:40:00 UTC"
        );
        assert_eq!(blocks[4]["text"]["text"], "*Investigate*");
        assert!(preformatted(&msg).starts_with("SELECT time"));
        let button = &blocks[6]["elements"][0];
        assert_eq!(
            button["url"],
            format!("https://console.example.com/alerts/{}", alert.alert_id)
        );
        assert!(msg["text"].as_str().expect("fallback").contains("[HIGH]"));
    }

    #[test]
    fn slack_message_without_console_url_has_no_button() {
        let msg = slack_message(&test_alert(), None);
        let blocks = msg["blocks"].as_array().expect("blocks");
        assert!(blocks.iter().all(|b| b["type"] != "actions"));
    }

    #[test]
    fn agent_chosen_text_cannot_become_slack_markup() {
        let mut alert = test_alert();
        alert.title = "new tool <https://evil.example|reset password> <!channel>".into();
        alert.user_id = "x```<@U1>".into();
        let msg = slack_message(&alert, None);
        // The header is plain text; everything else is mrkdwn and must hold
        // no raw `<` (links, mentions) and no early end of the code block.
        assert_eq!(msg["blocks"][0]["text"]["type"], "plain_text");
        let mut mrkdwn = vec![msg["text"].as_str().expect("fallback").to_owned()];
        for block in msg["blocks"].as_array().expect("blocks").iter().skip(1) {
            for text in [&block["text"]["text"], &block["elements"][0]["text"]] {
                mrkdwn.extend(text.as_str().map(str::to_owned));
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                mrkdwn.extend(field["text"].as_str().map(str::to_owned));
            }
        }
        for text in &mrkdwn {
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
        }
        // The SQL is rich text, shown and copied verbatim.
        assert_eq!(preformatted(&msg), alert.investigation_sql());
        assert!(alert.investigation_sql().contains("'x```<@U1>'"));
    }

    #[test]
    fn long_text_is_cut_to_slack_limits() {
        let mut alert = test_alert();
        alert.explanation = "x".repeat(10_000);
        alert.user_id = "u".repeat(500);
        let msg = slack_message(&alert, None);
        let header = msg["blocks"][0]["text"]["text"].as_str().expect("header");
        assert_eq!(header.chars().count(), SLACK_HEADER_MAX);
        let section = msg["blocks"][1]["text"]["text"].as_str().expect("section");
        assert_eq!(section.chars().count(), SLACK_TEXT_MAX);
        assert!(section.ends_with('\u{2026}'));
    }

    #[test]
    fn teams_card_is_an_adaptive_card_with_facts_sql_and_link() {
        let alert = test_alert();
        let msg = teams_message(&alert, Some("https://console.example.com"));
        assert_eq!(msg["type"], "message");
        let attachment = &msg["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        let body = card["body"].as_array().expect("body");
        let facts = body
            .iter()
            .find(|b| b["type"] == "FactSet")
            .expect("a fact set")["facts"]
            .as_array()
            .expect("facts");
        assert_eq!(facts[0]["title"], "Detector");
        assert_eq!(facts[0]["value"], "denial_spike");
        let sql = body.last().expect("sql block");
        assert_eq!(sql["type"], "CodeBlock");
        assert_eq!(sql["codeSnippet"], alert.investigation_sql());
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(
            card["actions"][0]["url"],
            format!("https://console.example.com/alerts/{}", alert.alert_id)
        );
    }

    /// The text of the Slack message's preformatted (SQL) block.
    fn preformatted(msg: &Value) -> String {
        let block = msg["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .find(|b| b["type"] == "rich_text")
            .expect("a rich text block");
        assert_eq!(block["elements"][0]["type"], "rich_text_preformatted");
        block["elements"][0]["elements"][0]["text"]
            .as_str()
            .expect("text")
            .to_owned()
    }

    #[test]
    fn agent_chosen_text_cannot_become_a_teams_link() {
        let mut alert = test_alert();
        alert.title = "[reset password](https://evil.example)".into();
        let text = teams_message(&alert, None).to_string();
        assert!(!text.contains("](https://evil"), "{text}");
    }

    #[test]
    fn the_sql_in_chat_is_the_sql_whatever_the_values_hold() {
        let mut alert = test_alert();
        alert.user_id = "o'neil](x)`*_".into();
        let sql = alert.investigation_sql();
        assert!(sql.contains("user_id = 'o''neil](x)`*_'"), "{sql}");
        assert_eq!(preformatted(&slack_message(&alert, None)), sql);
        let card = teams_message(&alert, None);
        let body = card["attachments"][0]["content"]["body"]
            .as_array()
            .expect("body");
        let code = body
            .iter()
            .find(|b| b["type"] == "CodeBlock")
            .expect("a code block");
        assert_eq!(code["codeSnippet"], sql);
        // The fallback for older clients is guarded like any other text.
        assert!(
            !code["fallback"]["text"]
                .as_str()
                .expect("text")
                .contains("](")
        );
    }

    #[test]
    fn many_sample_events_are_summarised() {
        let mut alert = test_alert();
        alert.evidence.event_ids = (0..15).map(|i| format!("e{i}")).collect();
        let msg = teams_message(&alert, None);
        let text = msg.to_string();
        assert!(text.contains("e9, and 5 more"), "{text}");
    }
}
