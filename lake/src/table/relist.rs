//! Reading the log while others commit to it. A listing of `_delta_log/` is
//! not a snapshot of it: a local disk lists a directory in hash order, so a
//! listing under way can miss a commit file created during it and still see
//! one created after; an object store's listing makes no promise either.
//! delta-kernel then finds a gap in the versions and refuses the read. The
//! missing commit is there by the time the log is listed again, so such a
//! read is retried, a few times, after a short pause. Any other failure is
//! returned at once.

use std::future::Future;
use std::time::Duration;

use deltalake::DeltaTableError;

/// The pauses before each new listing.
const PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(40),
    Duration::from_millis(160),
    Duration::from_millis(640),
];

/// Whether `error` is delta-kernel's refusal of a listing with a gap in
/// the commit versions.
pub(crate) fn is_listing_gap(error: &DeltaTableError) -> bool {
    error
        .to_string()
        .contains("Expected contiguous commit files")
}

/// Runs `read` until it succeeds, fails for another reason than a gap in the
/// listing, or has been retried after each of the pauses.
pub(crate) async fn relisting<T, F, Fut>(table: &str, mut read: F) -> Result<T, DeltaTableError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DeltaTableError>>,
{
    for pause in PAUSES {
        match read().await {
            Err(error) if is_listing_gap(&error) => {
                tracing::debug!(
                    table,
                    ?pause,
                    "the log's listing missed a commit; listing again"
                );
                tokio::time::sleep(pause).await;
            }
            done => return done,
        }
    }
    read().await
}
