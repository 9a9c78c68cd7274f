//! A seekable layer's table of contents: taken from the store when an earlier lazy load
//! kept it, else fetched by range (each form its own way), checked, and kept.
//!
//! - zstd:chunked: the annotations locate the table exactly: one range request. The
//!   compressed table is kept as a blob under its sha256 (the annotation's digest).
//! - eStargz: the annotation only vouches for the table's JSON; the footer at the blob's
//!   end locates it. One request for the blob's last [`EstargzPosition::TAIL`] bytes
//!   brings the footer and, but for very large tables, the table; a second brings the
//!   rest. The table's bytes are kept as a memo derived from the layer's digest (they are
//!   checked against the annotation again whenever they are read back).
//!
//! Offline, only a kept table serves; a registry that ignores `Range` sends the whole
//! layer, which is then stored and read whole.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cache_core::{Algorithm, DerivedKind, Store};
use layer_toc::{EstargzFooter, EstargzPosition, RangeFetch, Seekable, Toc, TocError, TocPosition};

use crate::artifact::BlobRef;
use crate::error::{LoadError, Result};
use crate::lazy::LayerRanges;
use crate::remote::Remote;

/// The derived entry holding an eStargz table: the table's start and the footer's length
/// (8 bytes each, little-endian), then the table's bytes.
const ESTARGZ_TABLE_KIND: &str = "estargz-table";

/// Whether the store keeps the table of `seekable` (so an offline load can read it).
pub(crate) fn table_stored(store: &Store, seekable: &Seekable) -> bool {
    match seekable {
        Seekable::ZstdChunked(position) => store.contains(&position.digest),
        Seekable::Estargz(position) => DerivedKind::new(ESTARGZ_TABLE_KIND)
            .ok()
            .and_then(|kind| store.get_derived(&position.blob, &kind).ok().flatten())
            .is_some(),
    }
}

/// The checked table of `blob`; `None` when the layer is to be read whole: fetching the
/// table brought the whole layer, or the table is valid but of a kind not read lazily.
pub(crate) async fn table(
    remote: &Remote,
    ranges: &Arc<LayerRanges>,
    runtime: &tokio::runtime::Handle,
    blob: &BlobRef,
    seekable: &Seekable,
    limit: u64,
) -> Result<Option<Toc>> {
    let fetch = Fetch {
        remote,
        ranges,
        runtime,
        blob,
    };
    let parsed = match seekable {
        Seekable::ZstdChunked(position) => zstd_chunked(&fetch, position, limit).await?,
        Seekable::Estargz(position) => estargz(&fetch, position, limit).await?,
    };
    match parsed {
        None => Ok(None),
        Some(Ok(toc)) => Ok(Some(toc)),
        // Valid, but not something this reader serves (a newer table version, sparse
        // chunks): the layer is read whole, as from a writer that wrote no table.
        Some(Err(e @ TocError::Unsupported { .. })) => {
            tracing::info!(error = %e, "reading the layer whole");
            Ok(None)
        }
        Some(Err(e)) => Err(e.into()),
    }
}

/// What fetching a table needs.
struct Fetch<'a> {
    remote: &'a Remote,
    ranges: &'a Arc<LayerRanges>,
    runtime: &'a tokio::runtime::Handle,
    blob: &'a BlobRef,
}

impl Fetch<'_> {
    /// Bytes `range` of the layer, fetched on the lazy-read runtime; `None` when the
    /// server sent the whole layer instead (it is stored now).
    async fn range(&self, range: Range<u64>) -> Result<Option<Bytes>> {
        let fetched = self
            .runtime
            .spawn(self.ranges.fetch(range))
            .await
            .map_err(|e| crate::lazy::unavailable(e.to_string()))?
            .map_err(|reason| TocError::File {
                blob: self.blob.digest,
                path: vfs_overlay::VfsPath::root(),
                reason: format!("fetching its table of contents: {reason}"),
            })?;
        Ok((!self.remote.store.contains(&self.blob.digest)).then_some(fetched))
    }

    fn offline_miss(&self) -> LoadError {
        self.remote.offline_miss(format!(
            "the table of contents of layer {}",
            self.blob.digest
        ))
    }
}

/// Parses off the runtime's threads: a table can be tens of megabytes of JSON.
async fn parse(
    work: impl FnOnce() -> std::result::Result<Toc, TocError> + Send + 'static,
) -> Result<std::result::Result<Toc, TocError>> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::lazy::unavailable(e.to_string()))
}

async fn zstd_chunked(
    fetch: &Fetch<'_>,
    position: &TocPosition,
    limit: u64,
) -> Result<Option<std::result::Result<Toc, TocError>>> {
    position.check(fetch.blob.size, limit)?;
    let store = &fetch.remote.store;
    let bytes = match store.get(&position.digest)? {
        Some(stored) => stored.into_bytes(),
        None if fetch.remote.offline => return Err(fetch.offline_miss()),
        None => {
            let Some(fetched) = fetch.range(position.range()).await? else {
                return Ok(None);
            };
            if Algorithm::Sha256.digest(&fetched) == position.digest {
                let data = fetched.clone();
                store
                    .get_or_ingest(
                        position.digest,
                        Some(position.compressed),
                        |mut ingest| async move { ingest.write(data).await.map(|()| ingest) },
                    )
                    .await?;
            }
            fetched
        }
    };
    let position = *position;
    Ok(Some(
        parse(move || Toc::parse(&position, &bytes, limit)).await?,
    ))
}

async fn estargz(
    fetch: &Fetch<'_>,
    position: &EstargzPosition,
    limit: u64,
) -> Result<Option<std::result::Result<Toc, TocError>>> {
    let store = &fetch.remote.store;
    let kind = DerivedKind::new(ESTARGZ_TABLE_KIND)?;
    if let Some(kept) = store.get_derived(&position.blob, &kind)?
        && let Some((footer, bytes)) = unpack_kept(&kept)
    {
        let (position, bytes) = (*position, kept.slice(bytes));
        return Ok(Some(
            parse(move || Toc::parse_estargz(&position, &footer, &bytes, limit)).await?,
        ));
    }
    if fetch.remote.offline {
        return Err(fetch.offline_miss());
    }
    let Some(tail) = fetch.range(position.tail()).await? else {
        return Ok(None);
    };
    let footer = position.footer(&tail, limit)?;
    let head = match position.still_needed(&footer) {
        Some(range) => match fetch.range(range).await? {
            Some(head) => head,
            None => return Ok(None),
        },
        None => Bytes::new(),
    };
    let bytes = position.toc_bytes(&footer, &head, &tail)?;
    let (for_parse, kept_footer, kept_position) = (bytes.clone(), footer.clone(), *position);
    let parsed =
        parse(move || Toc::parse_estargz(&kept_position, &kept_footer, &for_parse, limit)).await?;
    if parsed.is_ok() {
        let mut kept = Vec::with_capacity(bytes.len() + 16);
        kept.extend_from_slice(&footer.toc.start.to_le_bytes());
        kept.extend_from_slice(&footer.len.to_le_bytes());
        kept.extend_from_slice(&bytes);
        if let Err(e) = store.put_memo(&position.blob, &kind, kept).await {
            tracing::debug!(layer = %position.blob, error = %e, "could not keep the table");
        }
    }
    Ok(Some(parsed))
}

/// The footer and the range of the table's bytes in a kept eStargz table (`None` for
/// bytes that are not one).
fn unpack_kept(kept: &[u8]) -> Option<(EstargzFooter, Range<usize>)> {
    let start = u64::from_le_bytes(kept.get(..8)?.try_into().ok()?);
    let len = u64::from_le_bytes(kept.get(8..16)?.try_into().ok()?);
    let table = (kept.len() - 16) as u64;
    let footer = EstargzFooter {
        toc: start..start.checked_add(table)?,
        len,
    };
    Some((footer, 16..kept.len()))
}
