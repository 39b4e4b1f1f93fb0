//! Reads of the payer's data sets: the FWSS state view's
//! `getClientDataSets` (decoded by the width of the answer, both layouts)
//! and `getAllDataSetMetadata`, PDPVerifier's liveness, listener, piece and
//! leaf counts; and the choice of a data set to reuse.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;

use super::super::abi::{IFwssView, IFwssViewLegacy, IPdpVerifier};
use super::super::extra_data::WITH_CDN_KEY;
use super::{ChainError, ChainReader, DATA_SETS_PAGE};

/// One of the payer's data sets, with what reuse needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSet {
    /// On-chain data set id (PDPVerifier set id).
    pub data_set_id: U256,
    /// The `clientDataSetId` it was created with: sign AddPieces with it.
    pub client_data_set_id: U256,
    /// Registry id of its storage provider.
    pub provider_id: U256,
    /// The provider's payee.
    pub payee: Address,
    /// The provider's address.
    pub service_provider: Address,
    /// FilecoinPay rail paying for PDP storage.
    pub pdp_rail_id: U256,
    /// FilecoinPay rail paying FilBeam (0 when the CDN is off).
    pub cdn_rail_id: U256,
    /// Non-zero once the service was terminated.
    pub pdp_end_epoch: U256,
    /// Data-set metadata, sorted by key.
    pub metadata: Vec<(String, String)>,
    /// PDPVerifier says the set exists.
    pub live: bool,
    /// Its PDPVerifier listener is this network's FWSS.
    pub managed_by_fwss: bool,
    /// Pieces currently in the set.
    pub active_piece_count: U256,
    /// One-time fees (AddPieces, CreateDataSet) queued on the set and not yet
    /// paid out of its lifecycle reserve; `None` from a view older than the
    /// FWSS change of 2026-06-11.
    pub pending_one_time_payments: Option<U256>,
    /// What is left of the set's lifecycle reserve (the PDP rail's fixed
    /// lockup that pays one-time fees); `None` from an older view.
    pub lifecycle_reserve_balance: Option<U256>,
}

/// One element of `getClientDataSets`, whichever layout the view answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSetInfo {
    /// FilecoinPay rail paying for PDP storage.
    pub pdp_rail_id: U256,
    /// FilecoinPay rail paying FilBeam cache misses.
    pub cache_miss_rail_id: U256,
    /// FilecoinPay rail paying FilBeam (0 when the CDN is off).
    pub cdn_rail_id: U256,
    /// The payer.
    pub payer: Address,
    /// The provider's payee.
    pub payee: Address,
    /// The provider's address.
    pub service_provider: Address,
    /// FWSS commission in basis points.
    pub commission_bps: U256,
    /// The `clientDataSetId` the set was created with.
    pub client_data_set_id: U256,
    /// Non-zero once the service was terminated.
    pub pdp_end_epoch: U256,
    /// Registry id of the provider.
    pub provider_id: U256,
    /// Queued one-time fees (13-word layout only).
    pub pending_one_time_payments: Option<U256>,
    /// Lifecycle reserve left (13-word layout only).
    pub lifecycle_reserve_balance: Option<U256>,
    /// On-chain data set id.
    pub data_set_id: U256,
}

/// Words per `DataSetInfoView` before the FWSS change of 2026-06-11.
pub const DATA_SET_INFO_WORDS_LEGACY: usize = 11;
/// Words per `DataSetInfoView` since the FWSS change of 2026-06-11
/// (`uint96 pendingOneTimePayments, uint96 lifecycleReserveBalance` after
/// `providerId`; filecoin-services of 2026-08-06).
pub const DATA_SET_INFO_WORDS: usize = 13;

/// Decodes the answer of `getClientDataSets(address,uint256,uint256)` from
/// `contract`, choosing the layout from the data: the answer is one dynamic
/// array of static tuples (offset word, length word, then `length` elements
/// of equal width), so the width is the words after the length divided by
/// the length. 11 and 13 words decode; any other width is
/// [`ChainError::UnknownLayout`], never a misread id.
pub fn decode_client_data_sets(
    raw: &[u8],
    contract: Address,
) -> Result<Vec<DataSetInfo>, ChainError> {
    const CALL: &str = "FWSSView.getClientDataSets";
    let bad = |message: String| ChainError::Decode {
        call: CALL,
        message,
    };
    if raw.len() < 64 || !raw.len().is_multiple_of(32) {
        return Err(bad(format!(
            "{} bytes is not an ABI-encoded dynamic array",
            raw.len()
        )));
    }
    let word = |i: usize| U256::from_be_slice(&raw[i * 32..(i + 1) * 32]);
    if word(0) != U256::from(32) {
        return Err(bad(format!("array offset {} is not 32", word(0))));
    }
    let len = word(1);
    let words_after = raw.len() / 32 - 2;
    if len == U256::ZERO {
        return Ok(Vec::new());
    }
    if len > U256::from(words_after) {
        return Err(bad(format!(
            "{len} elements cannot fit in {words_after} words"
        )));
    }
    let len = len.to::<usize>();
    if !words_after.is_multiple_of(len) {
        return Err(bad(format!(
            "{words_after} words do not split into {len} equal elements"
        )));
    }
    // The two layouts are two generated types with the same field names; the
    // old one lacks the two fee fields.
    macro_rules! data_set_info {
        ($i:ident, $pending:expr, $reserve:expr) => {
            DataSetInfo {
                pdp_rail_id: $i.pdpRailId,
                cache_miss_rail_id: $i.cacheMissRailId,
                cdn_rail_id: $i.cdnRailId,
                payer: $i.payer,
                payee: $i.payee,
                service_provider: $i.serviceProvider,
                commission_bps: $i.commissionBps,
                client_data_set_id: $i.clientDataSetId,
                pdp_end_epoch: $i.pdpEndEpoch,
                provider_id: $i.providerId,
                pending_one_time_payments: $pending,
                lifecycle_reserve_balance: $reserve,
                data_set_id: $i.dataSetId,
            }
        };
    }
    let width = words_after / len;
    let known = "11 (before the FWSS change of 2026-06-11) and 13 (since)";
    match width {
        DATA_SET_INFO_WORDS => {
            let infos = <IFwssView::getClientDataSetsCall as SolCall>::abi_decode_returns(raw)
                .map_err(|e| bad(e.to_string()))?;
            Ok(infos
                .into_iter()
                .map(|i| {
                    data_set_info!(
                        i,
                        Some(U256::from(i.pendingOneTimePayments)),
                        Some(U256::from(i.lifecycleReserveBalance))
                    )
                })
                .collect())
        }
        DATA_SET_INFO_WORDS_LEGACY => {
            let infos =
                <IFwssViewLegacy::getClientDataSetsCall as SolCall>::abi_decode_returns(raw)
                    .map_err(|e| bad(e.to_string()))?;
            Ok(infos
                .into_iter()
                .map(|i| data_set_info!(i, None, None))
                .collect())
        }
        width => Err(ChainError::UnknownLayout {
            call: CALL,
            contract,
            width,
            known,
        }),
    }
}

impl DataSet {
    /// CDN on: a CDN rail and the `withCDN` metadata key, as the reference client decides.
    pub fn has_cdn(&self) -> bool {
        self.cdn_rail_id > U256::ZERO && self.metadata.iter().any(|(k, _)| k == WITH_CDN_KEY)
    }

    /// Can take new pieces: live, managed by FWSS, not terminated.
    pub fn is_usable(&self) -> bool {
        self.live && self.managed_by_fwss && self.pdp_end_epoch == U256::ZERO
    }
}

/// Picks the data set to add pieces to, or `None` to create one: usable, at
/// `provider_id`, with exactly the `wanted` metadata (and a CDN rail when
/// `withCDN` is wanted). Like the reference client, prefers a set that already
/// holds pieces, then the lowest id.
pub fn choose_reusable_data_set<'a>(
    data_sets: &'a [DataSet],
    provider_id: U256,
    wanted: &[(String, String)],
) -> Option<&'a DataSet> {
    let wanted_map: BTreeMap<&str, &str> = wanted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wants_cdn = wanted_map.contains_key(WITH_CDN_KEY);
    data_sets
        .iter()
        .filter(|ds| ds.is_usable() && ds.provider_id == provider_id)
        .filter(|ds| {
            let have: BTreeMap<&str, &str> = ds
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have == wanted_map && (!wants_cdn || ds.has_cdn())
        })
        .min_by_key(|ds| (ds.active_piece_count == U256::ZERO, ds.data_set_id))
}

impl ChainReader {
    /// Every data set `payer` created through FWSS, with metadata and PDPVerifier state.
    pub async fn client_data_sets(&self, payer: Address) -> Result<Vec<DataSet>, ChainError> {
        let view = self.fwss_view_address().await?;
        let mut infos = Vec::new();
        let mut offset = 0u64;
        loop {
            let call = IFwssView::getClientDataSetsCall {
                client: payer,
                offset: U256::from(offset),
                limit: U256::from(DATA_SETS_PAGE),
            };
            let raw = self
                .call_raw("FWSSView.getClientDataSets", view, call)
                .await?;
            let page = decode_client_data_sets(&raw, view)?;
            let len = page.len() as u64;
            infos.extend(page);
            if len < DATA_SETS_PAGE {
                break;
            }
            offset += len;
        }
        let mut data_sets = Vec::with_capacity(infos.len());
        for info in infos {
            data_sets.push(self.data_set_details(view, info).await?);
        }
        Ok(data_sets)
    }

    async fn data_set_details(
        &self,
        view: Address,
        info: DataSetInfo,
    ) -> Result<DataSet, ChainError> {
        let id = info.data_set_id;
        let meta = self
            .call(
                "FWSSView.getAllDataSetMetadata",
                view,
                IFwssView::getAllDataSetMetadataCall { dataSetId: id },
            )
            .await?;
        let mut metadata: Vec<(String, String)> = meta.keys.into_iter().zip(meta.values).collect();
        metadata.sort();
        let pdp = self.contracts.pdp_verifier;
        let live = self
            .call(
                "PDPVerifier.dataSetLive",
                pdp,
                IPdpVerifier::dataSetLiveCall { setId: id },
            )
            .await?;
        // A deleted set has no listener or pieces to ask about.
        let (managed_by_fwss, active_piece_count) = if live {
            let listener = self
                .call(
                    "PDPVerifier.getDataSetListener",
                    pdp,
                    IPdpVerifier::getDataSetListenerCall { setId: id },
                )
                .await?;
            let count = self
                .call(
                    "PDPVerifier.getActivePieceCount",
                    pdp,
                    IPdpVerifier::getActivePieceCountCall { setId: id },
                )
                .await?;
            (listener == self.contracts.fwss, count)
        } else {
            (false, U256::ZERO)
        };
        Ok(DataSet {
            data_set_id: id,
            client_data_set_id: info.client_data_set_id,
            provider_id: info.provider_id,
            payee: info.payee,
            service_provider: info.service_provider,
            pdp_rail_id: info.pdp_rail_id,
            cdn_rail_id: info.cdn_rail_id,
            pdp_end_epoch: info.pdp_end_epoch,
            metadata,
            live,
            managed_by_fwss,
            active_piece_count,
            pending_one_time_payments: info.pending_one_time_payments,
            lifecycle_reserve_balance: info.lifecycle_reserve_balance,
        })
    }

    /// The 32-byte leaves holding data in live data set `data_set_id`
    /// (PDPVerifier `getDataSetLeafCount`): what FWSS prices its storage
    /// from, so what an upload into it adds to.
    pub async fn data_set_leaf_count(&self, data_set_id: U256) -> Result<U256, ChainError> {
        self.call(
            "PDPVerifier.getDataSetLeafCount",
            self.contracts.pdp_verifier,
            IPdpVerifier::getDataSetLeafCountCall { setId: data_set_id },
        )
        .await
    }

    /// The data set to reuse for `payer` at `provider_id` with `wanted`
    /// metadata (see [`choose_reusable_data_set`]), or `None` to create one.
    pub async fn find_reusable_data_set(
        &self,
        payer: Address,
        provider_id: U256,
        wanted: &[(String, String)],
    ) -> Result<Option<DataSet>, ChainError> {
        let data_sets = self.client_data_sets(payer).await?;
        Ok(choose_reusable_data_set(&data_sets, provider_id, wanted).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    const VIEW: Address = address!("9BF9e67e83EC8613883FDdDec4D3b38AEE937177");

    /// An ABI answer built word by word: offset 32, the length, then `rows`.
    fn raw_array(rows: &[Vec<u64>]) -> Vec<u8> {
        let mut words = vec![32u64, rows.len() as u64];
        for row in rows {
            words.extend(row);
        }
        words
            .iter()
            .flat_map(|w| U256::from(*w).to_be_bytes::<32>())
            .collect()
    }

    /// Word `i` of a row holds `base + i`, so every field is tell-tale.
    fn row(width: u64, base: u64) -> Vec<u64> {
        (1..=width).map(|i| base + i).collect()
    }

    #[test]
    fn the_13_word_layout_reads_the_lifecycle_fields_and_the_last_word_as_id() {
        let raw = raw_array(&[row(13, 0), row(13, 100)]);
        let infos = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(infos.len(), 2);
        let first = &infos[0];
        assert_eq!(first.pdp_rail_id, U256::from(1));
        assert_eq!(first.client_data_set_id, U256::from(8));
        assert_eq!(first.pdp_end_epoch, U256::from(9));
        assert_eq!(first.provider_id, U256::from(10));
        assert_eq!(first.pending_one_time_payments, Some(U256::from(11)));
        assert_eq!(first.lifecycle_reserve_balance, Some(U256::from(12)));
        assert_eq!(first.data_set_id, U256::from(13));
        assert_eq!(infos[1].data_set_id, U256::from(113));
    }

    #[test]
    fn the_11_word_layout_still_reads_with_no_lifecycle_fields() {
        let raw = raw_array(&[row(11, 0)]);
        let infos = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(infos[0].provider_id, U256::from(10));
        assert_eq!(infos[0].data_set_id, U256::from(11));
        assert_eq!(infos[0].pending_one_time_payments, None);
        assert_eq!(infos[0].lifecycle_reserve_balance, None);
    }

    #[test]
    fn typed_encodings_of_both_layouts_round_trip() {
        let current = IFwssView::DataSetInfoView {
            pdpRailId: U256::from(1),
            cacheMissRailId: U256::from(2),
            cdnRailId: U256::from(3),
            payer: VIEW,
            payee: VIEW,
            serviceProvider: VIEW,
            commissionBps: U256::ZERO,
            clientDataSetId: U256::from(77),
            pdpEndEpoch: U256::ZERO,
            providerId: U256::from(7),
            pendingOneTimePayments: alloy::primitives::Uint::from(5u64),
            lifecycleReserveBalance: alloy::primitives::Uint::from(6u64),
            dataSetId: U256::from(42),
        };
        let raw = IFwssView::getClientDataSetsCall::abi_encode_returns(&vec![current]);
        assert_eq!(raw.len(), 32 * (2 + 13));
        let got = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(
            (got[0].data_set_id, got[0].client_data_set_id),
            (U256::from(42), U256::from(77))
        );
        assert_eq!(got[0].lifecycle_reserve_balance, Some(U256::from(6)));
        let legacy = IFwssViewLegacy::DataSetInfoView {
            pdpRailId: U256::from(1),
            cacheMissRailId: U256::from(2),
            cdnRailId: U256::from(3),
            payer: VIEW,
            payee: VIEW,
            serviceProvider: VIEW,
            commissionBps: U256::ZERO,
            clientDataSetId: U256::from(77),
            pdpEndEpoch: U256::ZERO,
            providerId: U256::from(7),
            dataSetId: U256::from(42),
        };
        let raw = IFwssViewLegacy::getClientDataSetsCall::abi_encode_returns(&vec![legacy]);
        let got = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(got[0].data_set_id, U256::from(42));
    }

    #[test]
    fn an_unknown_width_is_an_error_naming_contract_function_and_width() {
        for width in [12u64, 14, 15] {
            let raw = raw_array(&[row(width, 0), row(width, 50)]);
            let err = decode_client_data_sets(&raw, VIEW).unwrap_err();
            assert!(
                matches!(err, ChainError::UnknownLayout { width: w, contract, .. }
                    if w == width as usize && contract == VIEW),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains("FWSSView.getClientDataSets"), "{text}");
            assert!(text.contains(&format!("answered {width} words")), "{text}");
            assert!(text.contains(&VIEW.to_string()), "{text}");
        }
    }

    #[test]
    fn empty_and_malformed_answers() {
        assert!(decode_client_data_sets(&raw_array(&[]), VIEW)
            .unwrap()
            .is_empty());
        let mut ragged = raw_array(&[row(13, 0), row(13, 0)]);
        ragged.truncate(ragged.len() - 32);
        assert!(matches!(
            decode_client_data_sets(&ragged, VIEW),
            Err(ChainError::Decode { .. })
        ));
        assert!(matches!(
            decode_client_data_sets(&[0u8; 31], VIEW),
            Err(ChainError::Decode { .. })
        ));
        let mut bad_offset = raw_array(&[row(13, 0)]);
        bad_offset[31] = 64;
        assert!(matches!(
            decode_client_data_sets(&bad_offset, VIEW),
            Err(ChainError::Decode { .. })
        ));
    }
}
