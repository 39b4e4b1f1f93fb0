//! A real JSON-RPC server over HTTP/1.1 on 127.0.0.1:0 for chain tests.
//!
//! It answers `eth_chainId`, `eth_blockNumber`, `eth_getBalance` and
//! `eth_call`; calls dispatch on (contract address, 4-byte selector) to
//! typed handlers registered with [`MockRpc::on_call`]. An unregistered call
//! reverts, so a test fails loudly when the code asks for something new.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::{Revert, SolCall, SolError};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The answer of a mocked contract call.
pub enum CallAnswer {
    /// ABI-encoded return data.
    Return(Vec<u8>),
    /// Revert with `Error(string)`.
    Revert(String),
}

type Handler = Arc<dyn Fn(&[u8]) -> CallAnswer + Send + Sync>;

#[derive(Default)]
struct State {
    chain_id: u64,
    block_number: u64,
    balances: HashMap<Address, U256>,
    handlers: HashMap<(Address, [u8; 4]), Handler>,
    /// Method names, plus `eth_call:<name>` for calls, in arrival order.
    log: Vec<String>,
    names: HashMap<[u8; 4], &'static str>,
    /// While set, every request is read and its connection closed unanswered (an outage).
    down: bool,
}

/// A running mock JSON-RPC endpoint; stops when dropped.
pub struct MockRpc {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockRpc {
    /// Starts a server answering for `chain_id`.
    pub async fn start(chain_id: u64) -> MockRpc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            chain_id,
            block_number: 1000,
            ..State::default()
        }));
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, state).await;
                });
            }
        });
        MockRpc { addr, state, task }
    }

    /// `http://127.0.0.1:<port>/rpc/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/rpc/v1", self.addr)
    }

    /// Sets the answer of `eth_blockNumber`.
    pub fn set_block_number(&self, n: u64) {
        self.state.lock().unwrap().block_number = n;
    }

    /// Sets the answer of `eth_getBalance` for `address` (others get 0).
    pub fn set_balance(&self, address: Address, wei: U256) {
        self.state.lock().unwrap().balances.insert(address, wei);
    }

    /// Answers calls of `C` to `to` with `f(decoded arguments)`.
    pub fn on_call<C, F>(&self, to: Address, f: F)
    where
        C: SolCall + 'static,
        F: Fn(C) -> C::Return + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(move |input: &[u8]| match C::abi_decode(input) {
            Ok(call) => CallAnswer::Return(C::abi_encode_returns(&f(call))),
            Err(e) => CallAnswer::Revert(format!("mock cannot decode {}: {e}", C::SIGNATURE)),
        });
        let mut state = self.state.lock().unwrap();
        state.handlers.insert((to, C::SELECTOR), handler);
        state.names.insert(C::SELECTOR, C::SIGNATURE);
    }

    /// Answers calls of `C` to `to` with these raw bytes, whatever the
    /// arguments (for answers no typed encoder makes, e.g. a layout from the
    /// future).
    pub fn on_call_raw<C: SolCall + 'static>(&self, to: Address, answer: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        state.handlers.insert(
            (to, C::SELECTOR),
            Arc::new(move |_: &[u8]| CallAnswer::Return(answer.clone())),
        );
        state.names.insert(C::SELECTOR, C::SIGNATURE);
    }

    /// Makes calls of `C` to `to` revert with `reason`.
    pub fn on_call_revert<C: SolCall + 'static>(&self, to: Address, reason: &str) {
        let reason = reason.to_string();
        let mut state = self.state.lock().unwrap();
        state.handlers.insert(
            (to, C::SELECTOR),
            Arc::new(move |_: &[u8]| CallAnswer::Revert(reason.clone())),
        );
        state.names.insert(C::SELECTOR, C::SIGNATURE);
    }

    /// Starts (`true`) or ends an outage: requests are read, then their
    /// connection is closed without an answer.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Requests seen so far: `eth_chainId`, `eth_call:balanceOf(address)`, ...
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// How many requests of this log name arrived.
    pub fn count(&self, name: &str) -> usize {
        self.log().iter().filter(|n| n.as_str() == name).count()
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        // Request line and headers; keep-alive until the client closes.
        let mut content_length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let post = line.starts_with("POST ");
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body).await?;
        if state.lock().unwrap().down {
            return Ok(());
        }
        let (status, answer) = if post {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(batch)) => (
                    "200 OK",
                    Value::Array(batch.iter().map(|r| answer(r, &state)).collect()),
                ),
                Ok(request) => ("200 OK", answer(&request, &state)),
                Err(_) => ("400 Bad Request", json!({"error": "not JSON"})),
            }
        } else {
            ("405 Method Not Allowed", json!({"error": "POST only"}))
        };
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        reader.get_mut().write_all(response.as_bytes()).await?;
    }
}

fn hex_quantity(n: impl std::fmt::LowerHex) -> String {
    format!("0x{n:x}")
}

fn answer(request: &Value, state: &Arc<Mutex<State>>) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    let err = |code: i64, message: String, data: Option<String>| {
        let mut error = json!({"code": code, "message": message});
        if let Some(data) = data {
            error["data"] = json!(data);
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    };
    let mut guard = state.lock().unwrap();
    match method {
        "eth_chainId" => {
            guard.log.push(method.into());
            ok(json!(hex_quantity(guard.chain_id)))
        }
        "eth_blockNumber" => {
            guard.log.push(method.into());
            ok(json!(hex_quantity(guard.block_number)))
        }
        "eth_getBalance" => {
            guard.log.push(method.into());
            let address: Option<Address> = params
                .get(0)
                .and_then(|a| serde_json::from_value(a.clone()).ok());
            let balance = address
                .and_then(|a| guard.balances.get(&a).copied())
                .unwrap_or_default();
            ok(json!(format!("{balance:#x}")))
        }
        "eth_call" => {
            let tx = params.get(0).cloned().unwrap_or(Value::Null);
            let to: Option<Address> = tx
                .get("to")
                .and_then(|a| serde_json::from_value(a.clone()).ok());
            let input: Option<Bytes> = tx
                .get("input")
                .or_else(|| tx.get("data"))
                .and_then(|d| serde_json::from_value(d.clone()).ok());
            let (Some(to), Some(input)) = (to, input) else {
                return err(-32602, "eth_call needs to and input".into(), None);
            };
            if input.len() < 4 {
                return err(
                    -32602,
                    "eth_call input shorter than a selector".into(),
                    None,
                );
            }
            let selector: [u8; 4] = input[..4].try_into().unwrap();
            let name = guard.names.get(&selector).copied().unwrap_or("unknown");
            guard.log.push(format!("eth_call:{name}"));
            let handler = guard.handlers.get(&(to, selector)).cloned();
            drop(guard);
            let answer = match handler {
                Some(handler) => handler(&input),
                None => CallAnswer::Revert(format!("mock: no handler for {name} at {to}")),
            };
            match answer {
                CallAnswer::Return(data) => ok(json!(Bytes::from(data).to_string())),
                CallAnswer::Revert(reason) => {
                    let data = Bytes::from(
                        Revert {
                            reason: reason.clone(),
                        }
                        .abi_encode(),
                    )
                    .to_string();
                    err(3, format!("execution reverted: {reason}"), Some(data))
                }
            }
        }
        other => {
            guard.log.push(other.into());
            err(-32601, format!("method {other} not mocked"), None)
        }
    }
}

// ---- a whole calibration chain for upload tests ----

use alloy::primitives::address;
use beam_edge::chain::abi::{
    IErc20, IFilecoinPay, IFwss, IFwssView, IFwssViewLegacy, IPdpVerifier, IServiceProviderRegistry,
};
use beam_edge::chain::Network;

pub const KEY: &str = "0x1234123412341234123412341234123412341234123412341234123412341234";
pub const PAYER: Address = address!("fF06ad5d076fa274B49C297f3fE9e29B5bA9AaDC");
const PROVIDER: Address = address!("1111111111111111111111111111111111111111");
const PAYEE: Address = address!("2222222222222222222222222222222222222222");
pub const VIEW: Address = address!("3333333333333333333333333333333333333333");
const CALIB: u64 = 314_159;

pub fn usdfc(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// A calibration chain where provider 7 serves at `curio_url` and the payer
/// has no data set yet; `funded` controls the wallet.
pub async fn chain(curio_url: String, funded: bool) -> MockRpc {
    chain_with(ChainSpec {
        funded,
        ..ChainSpec::new(vec![(7, curio_url)])
    })
    .await
}

/// One of the payer's data sets on the mock chain (live, FWSS, `withCDN`).
#[derive(Clone, Debug)]
pub struct MockDataSet {
    pub data_set_id: u64,
    pub provider_id: u64,
    pub client_data_set_id: u64,
    /// Lifecycle reserve left, in attoUSDFC.
    pub reserve: u64,
}

/// What [`chain_with`] serves.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    /// Registry ids and service URLs; all active with a PDP product.
    pub providers: Vec<(u64, String)>,
    /// Funds and FWSS approval (see [`chain`]).
    pub funded: bool,
    /// USDFC deposited in FilecoinPay when funded.
    pub funds: U256,
    /// The payer's data sets.
    pub data_sets: Vec<MockDataSet>,
    /// Serve the 11-word `DataSetInfoView` of before the FWSS change of
    /// 2026-06-11 instead of today's 13-word one.
    pub legacy_view: bool,
    /// Serve `getPriceList()` on the view (today's deployments do).
    pub price_list: bool,
}

impl ChainSpec {
    pub fn new(providers: Vec<(u64, String)>) -> ChainSpec {
        ChainSpec {
            providers,
            funded: true,
            funds: usdfc(10),
            data_sets: Vec::new(),
            legacy_view: false,
            price_list: true,
        }
    }
}

/// The service-provider address of provider `id` on the mock chain.
pub fn provider_address(id: u64) -> Address {
    if id == 7 {
        PROVIDER
    } else {
        Address::with_last_byte(0x10 + id as u8)
    }
}

/// The payee of provider `id` on the mock chain.
pub fn payee_address(id: u64) -> Address {
    if id == 7 {
        PAYEE
    } else {
        Address::with_last_byte(0x80 + id as u8)
    }
}

/// FWSS v1.3.0's price list as its state view returns it
/// (filecoin-services `PriceListUSDFC.sol`, pricing rationale of June 2026).
pub fn price_list() -> IFwssView::PriceList {
    let f = beam_edge::chain::FeeSchedule::documented();
    IFwssView::PriceList {
        token: Network::Calibration.contracts().usdfc,
        rates: IFwssView::PriceListRates {
            storagePerTibPerMonth: f.storage_per_tib_per_month,
            datasetFeePerMonth: f.dataset_fee_per_month,
            cdnEgressPerTib: usdfc(7),
            cacheMissEgressPerTib: usdfc(7),
        },
        fees: IFwssView::PriceListFees {
            createDataSetFee: f.create_data_set_fee,
            addPiecesBaseFee: f.add_pieces_base_fee,
            addPiecesPerPieceFee: f.add_pieces_per_piece_fee,
            schedulePieceRemovalsFee: usdfc(2) / U256::from(1000),
            terminateFee: usdfc(112) / U256::from(100_000),
        },
        lockups: IFwssView::PriceListLockups {
            lifecycleReserveTarget: f.lifecycle_reserve_target,
            replenishThreshold: f.replenish_threshold,
            defaultLockupPeriod: f.default_lockup_period,
            cdnLockupAmount: f.cdn_lockup_amount,
            cacheMissLockupAmount: f.cache_miss_lockup_amount,
            cdnLockupPeriod: U256::from(2880 * 5),
        },
    }
}

/// A calibration chain as `spec` says: registry (`getProviderWithProduct`,
/// `getAllActiveProviders`), FWSS and its view (`getClientDataSets` in the
/// current or legacy layout, metadata, `getPriceList`), PDPVerifier,
/// FilecoinPay and USDFC.
pub async fn chain_with(spec: ChainSpec) -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let c = Network::Calibration.contracts();
    let funded = spec.funded;
    rpc.set_block_number(1_000);
    rpc.set_balance(PAYER, U256::from(10u64).pow(U256::from(18)));
    let providers = spec.providers.clone();
    rpc.on_call::<IServiceProviderRegistry::getProviderWithProductCall, _>(
        c.sp_registry,
        move |q| {
            let id = q.providerId.to::<u64>();
            let url = providers
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, u)| u.clone())
                .unwrap_or_else(|| panic!("mock chain: no provider {id}"));
            IServiceProviderRegistry::ProviderWithProduct {
                providerId: U256::from(id),
                providerInfo: IServiceProviderRegistry::ServiceProviderInfoView {
                    serviceProvider: provider_address(id),
                    payee: payee_address(id),
                    name: format!("mock curio {id}"),
                    description: String::new(),
                    isActive: true,
                },
                product: IServiceProviderRegistry::ServiceProduct {
                    productType: 0,
                    capabilityKeys: vec!["serviceURL".into()],
                    isActive: true,
                },
                productCapabilityValues: vec![Bytes::from(url.into_bytes())],
            }
        },
    );
    let ids: Vec<U256> = spec
        .providers
        .iter()
        .map(|(id, _)| U256::from(*id))
        .collect();
    rpc.on_call::<IServiceProviderRegistry::getAllActiveProvidersCall, _>(
        c.sp_registry,
        move |q| {
            let from = q.offset.to::<usize>().min(ids.len());
            let to = (from + q.limit.to::<usize>()).min(ids.len());
            IServiceProviderRegistry::getAllActiveProvidersReturn {
                providerIds: ids[from..to].to_vec(),
                hasMore: to < ids.len(),
            }
        },
    );
    rpc.on_call::<IFwss::viewContractAddressCall, _>(c.fwss, |_| VIEW);
    let sets = spec.data_sets.clone();
    if spec.legacy_view {
        rpc.on_call::<IFwssViewLegacy::getClientDataSetsCall, _>(VIEW, move |q| {
            if q.offset > U256::ZERO {
                return Vec::new();
            }
            sets.iter()
                .map(|d| IFwssViewLegacy::DataSetInfoView {
                    pdpRailId: U256::from(100 + d.data_set_id),
                    cacheMissRailId: U256::from(200 + d.data_set_id),
                    cdnRailId: U256::from(300 + d.data_set_id),
                    payer: PAYER,
                    payee: payee_address(d.provider_id),
                    serviceProvider: provider_address(d.provider_id),
                    commissionBps: U256::ZERO,
                    clientDataSetId: U256::from(d.client_data_set_id),
                    pdpEndEpoch: U256::ZERO,
                    providerId: U256::from(d.provider_id),
                    dataSetId: U256::from(d.data_set_id),
                })
                .collect()
        });
    } else {
        rpc.on_call::<IFwssView::getClientDataSetsCall, _>(VIEW, move |q| {
            if q.offset > U256::ZERO {
                return Vec::new();
            }
            sets.iter()
                .map(|d| IFwssView::DataSetInfoView {
                    pdpRailId: U256::from(100 + d.data_set_id),
                    cacheMissRailId: U256::from(200 + d.data_set_id),
                    cdnRailId: U256::from(300 + d.data_set_id),
                    payer: PAYER,
                    payee: payee_address(d.provider_id),
                    serviceProvider: provider_address(d.provider_id),
                    commissionBps: U256::ZERO,
                    clientDataSetId: U256::from(d.client_data_set_id),
                    pdpEndEpoch: U256::ZERO,
                    providerId: U256::from(d.provider_id),
                    pendingOneTimePayments: alloy::primitives::Uint::ZERO,
                    lifecycleReserveBalance: alloy::primitives::Uint::from(d.reserve),
                    dataSetId: U256::from(d.data_set_id),
                })
                .collect()
        });
    }
    rpc.on_call::<IFwssView::getAllDataSetMetadataCall, _>(VIEW, |_| {
        IFwssView::getAllDataSetMetadataReturn {
            keys: vec!["withCDN".into()],
            values: vec![String::new()],
        }
    });
    if spec.price_list {
        rpc.on_call::<IFwssView::getPriceListCall, _>(VIEW, |_| price_list());
    }
    rpc.on_call::<IPdpVerifier::dataSetLiveCall, _>(c.pdp_verifier, |_| true);
    rpc.on_call::<IPdpVerifier::getDataSetListenerCall, _>(c.pdp_verifier, move |_| c.fwss);
    rpc.on_call::<IPdpVerifier::getActivePieceCountCall, _>(c.pdp_verifier, |_| U256::from(1));
    let funds = spec.funds;
    rpc.on_call::<IErc20::balanceOfCall, _>(
        c.usdfc,
        move |_| if funded { usdfc(20) } else { U256::ZERO },
    );
    rpc.on_call::<IFilecoinPay::accountsCall, _>(c.filecoin_pay, move |_| {
        IFilecoinPay::accountsReturn {
            funds: if funded { funds } else { U256::ZERO },
            lockupCurrent: U256::ZERO,
            lockupRate: U256::ZERO,
            lockupLastSettledAt: U256::from(1_000),
        }
    });
    rpc.on_call::<IFilecoinPay::operatorApprovalsCall, _>(c.filecoin_pay, move |_| {
        IFilecoinPay::operatorApprovalsReturn {
            isApproved: funded,
            rateAllowance: if funded { U256::MAX } else { U256::ZERO },
            lockupAllowance: if funded { U256::MAX } else { U256::ZERO },
            rateUsage: U256::ZERO,
            lockupUsage: U256::ZERO,
            maxLockupPeriod: U256::from(86_400),
        }
    });
    rpc
}
