//! An alert as an OCSF Detection Finding (class 2004), the body an `ocsf`
//! destination receives.
//!
//! The finding is not built here: the alert becomes its row of the lake's
//! `alerts` table (the row [`crate::sink`] writes) and goes through
//! `tooltrail_lake::ocsf::DETECTION_FINDING`, the definition the
//! `ocsf_detection_finding` view uses too. So a SIEM fed by this destination
//! and one that reads the view see the same record.

use serde_json::Value;
use tooltrail_lake::ocsf;
use tooltrail_schemas::lake::AlertBatchBuilder;

use crate::alert::Alert;

/// `alert` as an OCSF Detection Finding, NULL attributes left out.
pub async fn detection_finding(alert: &Alert) -> tooltrail_lake::Result<Value> {
    let record = alert.to_json();
    let mut builder = AlertBatchBuilder::new();
    builder.append(&crate::sink::row(alert, &record));
    let batch = builder.finish()?;
    let mut findings = ocsf::to_json(&ocsf::DETECTION_FINDING, batch).await?;
    Ok(findings
        .pop()
        .expect("a projection of one row gives one record"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Detector, DetectorKind, Severity};
    use crate::deliver::test_alert;

    #[tokio::test]
    async fn every_detector_and_severity_gives_a_complete_finding() {
        let detectors = DetectorKind::ALL
            .into_iter()
            .map(Detector::from)
            .chain([Detector::sigma("mcp-private-key-in-arguments")]);
        for (n, detector) in detectors.enumerate() {
            let mut alert = test_alert();
            alert.detector = detector.clone();
            alert.severity = Severity::ALL[n % Severity::ALL.len()];
            if detector.builtin().is_none_or(|d| d.is_immediate()) {
                alert.evidence.observed = None;
                alert.evidence.expected = None;
                alert.evidence.new_values = vec!["a new value".into()];
            }
            let finding = detection_finding(&alert).await.expect("rendered");
            assert_eq!(
                ocsf::missing_required(&ocsf::DETECTION_FINDING, &finding),
                Vec::<String>::new(),
                "{detector}: {finding:#}"
            );
            assert_eq!(finding["finding_info"]["uid"], alert.alert_id.as_str());
            assert_eq!(finding["finding_info"]["types"][0], detector.as_str());
            assert_ne!(
                finding["finding_info"]["analytic"]["type_id"], 0,
                "{detector} has no analytic type in the OCSF definition"
            );
            let severity_id = 2 + Severity::ALL
                .iter()
                .position(|s| *s == alert.severity)
                .expect("listed");
            assert_eq!(finding["severity_id"], severity_id, "{detector}");
            assert_eq!(finding["metadata"]["tenant_uid"], "acme");
        }
    }
}
