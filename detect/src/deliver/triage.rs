//! Triage changes for the destinations that follow them (`triage = true`):
//! an analyst acknowledged, closed, reopened, assigned or commented on an
//! alert the destination was sent. Each change goes through the outbox like
//! an alert (durable, retried, at least once), under its own key, so chat
//! shows who took an alert.
//!
//! Bodies: a webhook gets `{"type": "alert.triage", …}` (signed like an
//! alert, `Idempotency-Key` the change's key); Slack and Teams a short
//! message naming the alert, who changed it and how. Slack and Teams incoming
//! webhooks cannot answer in a thread, so the message is a new one that
//! quotes the alert's title and links to it in the console.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chat::{console_link, emoji, slack_escape, teams_text, truncate};
use crate::alert::Alert;

/// One triage change of an alert, as the alerts API made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageNote {
    /// Unique per change (a UUID): with the alert id, the outbox key.
    pub triage_id: String,
    /// `open`, `acknowledged` or `closed`.
    pub status: String,
    pub assignee: Option<String>,
    /// Set when `status` is `closed`.
    pub close_reason: Option<String>,
    pub comment: Option<String>,
    /// The name of the token that made the change.
    pub actor: String,
    #[serde(with = "time_format")]
    pub time: DateTime<Utc>,
}

impl TriageNote {
    /// What happened, in a few words: `acknowledged`, `closed as
    /// false_positive`, `reopened`, `commented on`.
    fn verb(&self) -> String {
        match (self.status.as_str(), self.close_reason.as_deref()) {
            ("closed", Some(reason)) => format!("closed as {reason}"),
            ("open", _) if self.comment.is_some() => "commented on".into(),
            ("open", _) => "reopened".into(),
            (status, _) => status.to_owned(),
        }
    }
}

/// The body a webhook gets for a triage change of `alert`.
pub fn webhook_body(alert: &Alert, note: &TriageNote) -> Value {
    json!({
        "type": "alert.triage",
        "alert_id": alert.alert_id,
        "tenant_id": alert.tenant_id,
        "user_id": alert.user_id,
        "detector": alert.detector,
        "severity": alert.severity.as_str(),
        "title": alert.title,
        "triage": note,
    })
}

/// A Slack message for a triage change of `alert`.
pub fn slack_message(alert: &Alert, note: &TriageNote, console_url: Option<&str>) -> Value {
    let e = slack_escape;
    let mut text = format!(
        "{} *{}* {} *{}* ({}@{})",
        emoji(alert.severity),
        e(&note.actor),
        note.verb(),
        e(&alert.title),
        e(&alert.user_id),
        e(&alert.tenant_id),
    );
    if let Some(assignee) = &note.assignee {
        text.push_str(&format!("\nassigned to *{}*", e(assignee)));
    }
    if let Some(comment) = &note.comment {
        text.push_str(&format!("\n> {}", e(comment).replace('\n', "\n> ")));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&text, 3000)},
    })];
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
    json!({"text": truncate(&text, 3000), "blocks": blocks})
}

/// A Teams message (an Adaptive Card) for a triage change of `alert`.
pub fn teams_message(alert: &Alert, note: &TriageNote, console_url: Option<&str>) -> Value {
    let t = teams_text;
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": t(&format!("{} {} {}: {}", emoji(alert.severity), note.actor, note.verb(), alert.title)),
        "weight": "Bolder",
        "wrap": true,
    })];
    let mut facts = vec![
        json!({"title": "User", "value": t(&format!("{}@{}", alert.user_id, alert.tenant_id))}),
    ];
    if let Some(assignee) = &note.assignee {
        facts.push(json!({"title": "Assignee", "value": t(assignee)}));
    }
    if let Some(comment) = &note.comment {
        facts.push(json!({"title": "Comment", "value": t(comment)}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
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

/// RFC 3339 with microseconds and `Z`, as alert records carry times.
mod time_format {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&tooltrail_schemas::format_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::test_alert;

    fn note(status: &str, reason: Option<&str>, comment: Option<&str>) -> TriageNote {
        TriageNote {
            triage_id: "0195c0de-0000-7000-8000-000000000001".into(),
            status: status.into(),
            assignee: Some("ana".into()),
            close_reason: reason.map(str::to_owned),
            comment: comment.map(str::to_owned),
            actor: "ana".into(),
            // The wire carries microseconds, as the lake does.
            time: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
        }
    }

    #[test]
    fn a_change_reads_as_what_happened() {
        assert_eq!(note("acknowledged", None, None).verb(), "acknowledged");
        assert_eq!(
            note("closed", Some("false_positive"), None).verb(),
            "closed as false_positive"
        );
        assert_eq!(note("open", None, None).verb(), "reopened");
        assert_eq!(note("open", None, Some("looking")).verb(), "commented on");
    }

    #[test]
    fn chat_messages_name_the_change_and_escape_what_analysts_wrote() {
        let alert = test_alert();
        let change = note(
            "closed",
            Some("true_positive_benign"),
            Some("<!channel> see <x|y>"),
        );
        let slack = slack_message(&alert, &change, Some("https://tooltrail.example"));
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("closed as true_positive_benign"), "{text}");
        assert!(!text.contains("<!channel>"), "{text}");
        assert_eq!(
            slack["blocks"][1]["elements"][0]["url"],
            format!("https://tooltrail.example/alerts/{}", alert.alert_id)
        );
        let teams = teams_message(&alert, &change, None);
        assert!(teams.to_string().contains("closed as true_positive_benign"));
        let body = webhook_body(&alert, &change);
        assert_eq!(body["type"], "alert.triage");
        assert_eq!(body["triage"]["close_reason"], "true_positive_benign");
        let back: TriageNote = serde_json::from_value(body["triage"].clone()).unwrap();
        assert_eq!(back, change);
    }
}
