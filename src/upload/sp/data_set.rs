//! Data sets: create one, add pieces to one, or both in one transaction
//! (create-and-add), and poll Curio until each transaction has landed
//! (judging the status answers without I/O, for the hostile-input harness).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::piece::PieceCid;

use super::call::{
    address, hex_data, is_hex_prefixed, parse_id, parse_json, pending_or_error, tx_hash_arg,
};
use super::{PollVerdict, SpClient, SpError, Step};
/// A confirmed add-pieces transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PiecesAdded {
    /// The data set the pieces joined.
    pub data_set_id: u64,
    /// The ids the chain gave the pieces, in request order.
    pub piece_ids: Vec<u64>,
    /// The transaction that landed on chain: Curio's `confirmedTxHash` when
    /// it replaced a stuck transaction by fee, else the one it was sent as.
    /// Receipts are read for this hash; Curio is polled with the original.
    pub tx_hash: String,
}

impl SpClient {
    /// `POST /pdp/data-sets` with `{recordKeeper, extraData}`; returns the
    /// transaction hash to give [`wait_data_set_created`](Self::wait_data_set_created).
    /// Not retried: a repeat could create a second data set.
    pub async fn create_data_set(
        &self,
        record_keeper: &str,
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::CreateDataSet;
        let body = json!({
            "recordKeeper": address(step, record_keeper)?,
            "extraData": hex_data(step, extra_data_hex)?,
        });
        self.post_for_tx(step, "pdp/data-sets", body).await
    }

    /// Polls `GET /pdp/data-sets/created/{txHash}` until the data set exists
    /// and returns its id. A rejected transaction is final.
    pub async fn wait_data_set_created(&self, tx_hash: &str) -> Result<u64, SpError> {
        let step = Step::WaitDataSetCreated;
        let tx = tx_hash_arg(step, tx_hash)?;
        let url = self.url(step, &format!("pdp/data-sets/created/{tx}"))?;
        self.poll(step, url, |status, body| {
            judge_data_set_created(status, body, &tx)
        })
        .await
    }

    /// `POST /pdp/data-sets/{id}/pieces` with each piece as its own single
    /// sub-piece; returns the transaction hash. Not retried.
    pub async fn add_pieces(
        &self,
        data_set_id: u64,
        pieces: &[PieceCid],
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::AddPieces;
        let body = json!({
            "pieces": pieces_json(step, pieces)?,
            "extraData": hex_data(step, extra_data_hex)?,
        });
        self.post_for_tx(step, &format!("pdp/data-sets/{data_set_id}/pieces"), body)
            .await
    }

    /// Polls `GET /pdp/data-sets/{id}/pieces/added/{txHash}` until the
    /// pieces are added and returns their ids. A rejected transaction is final.
    pub async fn wait_pieces_added(
        &self,
        data_set_id: u64,
        tx_hash: &str,
    ) -> Result<PiecesAdded, SpError> {
        let step = Step::WaitPiecesAdded;
        let tx = tx_hash_arg(step, tx_hash)?;
        let url = self.url(
            step,
            &format!("pdp/data-sets/{data_set_id}/pieces/added/{tx}"),
        )?;
        self.poll(step, url, |status, body| {
            judge_pieces_added(status, body, &tx, data_set_id)
        })
        .await
    }

    /// `POST /pdp/data-sets/create-and-add`: one transaction that creates a
    /// data set holding `pieces`. Returns its hash; wait with
    /// [`wait_created_and_added`](Self::wait_created_and_added). Not retried.
    pub async fn create_and_add(
        &self,
        record_keeper: &str,
        pieces: &[PieceCid],
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::CreateAndAdd;
        let body = json!({
            "recordKeeper": address(step, record_keeper)?,
            "extraData": hex_data(step, extra_data_hex)?,
            "pieces": pieces_json(step, pieces)?,
        });
        self.post_for_tx(step, "pdp/data-sets/create-and-add", body)
            .await
    }

    /// Waits for a create-and-add transaction: the data set first, then its
    /// pieces (both polls use the same transaction hash, as the reference
    /// client does).
    pub async fn wait_created_and_added(&self, tx_hash: &str) -> Result<PiecesAdded, SpError> {
        let data_set_id = self.wait_data_set_created(tx_hash).await?;
        self.wait_pieces_added(data_set_id, tx_hash).await
    }
}

/// One answer to `GET /pdp/data-sets/created/{tx}`: the new data set's id
/// once created; a rejected transaction is final.
pub fn judge_data_set_created(
    status: StatusCode,
    body: &[u8],
    tx: &str,
) -> Result<PollVerdict<u64>, SpError> {
    let step = Step::WaitDataSetCreated;
    let (value, tx_status) = match tx_status_answer(step, status, body, tx)? {
        Ok(answer) => answer,
        Err(pending) => return Ok(pending),
    };
    if value.get("dataSetCreated").and_then(Value::as_bool) == Some(true) {
        return parse_id(step, "dataSetId", value.get("dataSetId")).map(PollVerdict::Ready);
    }
    Ok(PollVerdict::Pending(format!(
        "transaction {tx_status}, data set not created yet"
    )))
}

/// One answer to `GET /pdp/data-sets/{data_set_id}/pieces/added/{tx}`: the
/// confirmed piece ids once added; a rejected transaction is final.
pub fn judge_pieces_added(
    status: StatusCode,
    body: &[u8],
    tx: &str,
    data_set_id: u64,
) -> Result<PollVerdict<PiecesAdded>, SpError> {
    let step = Step::WaitPiecesAdded;
    let (value, tx_status) = match tx_status_answer(step, status, body, tx)? {
        Ok(answer) => answer,
        Err(pending) => return Ok(pending),
    };
    if value.get("piecesAdded").and_then(Value::as_bool) != Some(true) {
        return Ok(PollVerdict::Pending(format!(
            "transaction {tx_status}, pieces not added yet"
        )));
    }
    let id = match value.get("dataSetId") {
        Some(v) => parse_id(step, "dataSetId", Some(v))?,
        None => data_set_id,
    };
    if id != data_set_id {
        return Err(SpError::BadResponse {
            step,
            reason: format!("asked about data set {data_set_id}, answer is for {id}"),
        });
    }
    let ids = value
        .get("confirmedPieceIds")
        .and_then(Value::as_array)
        .ok_or_else(|| SpError::BadResponse {
            step,
            reason: "piecesAdded without confirmedPieceIds".into(),
        })?
        .iter()
        .map(|v| parse_id(step, "confirmedPieceIds", Some(v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PollVerdict::Ready(PiecesAdded {
        data_set_id: id,
        piece_ids: ids,
        tx_hash: landed_tx_hash(&value, tx),
    }))
}

/// The hash of the transaction that landed: `confirmedTxHash ?? txHash`
/// (Curio of 2026-08, `pdp/handlers.go`: a replace-by-fee lands under a new
/// hash), or `polled` when the answer names neither as `0x` hex.
fn landed_tx_hash(value: &Value, polled: &str) -> String {
    ["confirmedTxHash", "txHash"]
        .iter()
        .filter_map(|key| value.get(*key).and_then(Value::as_str))
        .find(|hash| is_hex_prefixed(hash))
        .unwrap_or(polled)
        .to_string()
}

/// The common part of a transaction-status answer: a non-200 is pending (404)
/// or an error; a rejected transaction is final. Gives the JSON and its
/// `txStatus`, or the pending verdict to return.
fn tx_status_answer<T>(
    step: Step,
    status: StatusCode,
    body: &[u8],
    tx: &str,
) -> Result<Result<(Value, String), PollVerdict<T>>, SpError> {
    if status != StatusCode::OK {
        return pending_or_error(step, status, body, &[StatusCode::NOT_FOUND]).map(Err);
    }
    let value = parse_json(step, body)?;
    let tx_status = value
        .get("txStatus")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    if tx_status == "rejected" {
        return Err(SpError::Rejected {
            step,
            tx_hash: tx.to_string(),
        });
    }
    Ok(Ok((value, tx_status)))
}
fn pieces_json(step: Step, pieces: &[PieceCid]) -> Result<Value, SpError> {
    if pieces.is_empty() {
        return Err(SpError::InvalidArgument {
            step,
            reason: "at least one piece is required".into(),
        });
    }
    if let Some(v1) = pieces.iter().find(|p| p.payload_size().is_none()) {
        return Err(SpError::InvalidArgument {
            step,
            reason: format!("{v1} is a v1 PieceCID; the provider needs v2"),
        });
    }
    Ok(Value::Array(
        pieces
            .iter()
            .map(|p| {
                let cid = p.to_string();
                json!({ "pieceCid": cid, "subPieces": [{ "subPieceCid": cid }] })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_landed_transaction_is_confirmed_tx_hash_else_tx_hash() {
        let polled = "0xaa";
        let both = json!({"txHash": "0xaa", "confirmedTxHash": "0xbb"});
        assert_eq!(landed_tx_hash(&both, polled), "0xbb");
        assert_eq!(landed_tx_hash(&json!({"txHash": "0xaa"}), polled), "0xaa");
        // Not hex: not trusted.
        let junk = json!({"txHash": "0xaa", "confirmedTxHash": "../x"});
        assert_eq!(landed_tx_hash(&junk, polled), "0xaa");
        assert_eq!(landed_tx_hash(&json!({}), polled), "0xaa");
    }
}
