//! A real JSON-RPC server over HTTP/1.1 on 127.0.0.1:0 for chain tests.
//!
//! It answers `eth_chainId`, `eth_blockNumber`, `eth_getBalance` and
//! `eth_call`; calls dispatch on (contract address, 4-byte selector) to
//! typed handlers registered with [`MockRpc::on_call`]. An unregistered call
//! reverts, so a test fails loudly when the code asks for something new.
//!
//! [`chain_with`] builds a whole calibration chain on a [`ledger::Ledger`]:
//! every read answers per argument from the ledger (an unknown account reads
//! as zeros), and the mock Curios of its providers are linked to it
//! (`POST /mock/chain`), so their create-and-add and add-pieces
//! transactions run the contracts' checks and arithmetic through
//! `eth_sendTransaction` and revert as the real ones would.

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

pub mod ledger;
use ledger::Ledger;

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
    /// The contracts' state, when [`chain_with`] built this chain.
    ledger: Option<Arc<Mutex<Ledger>>>,
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

    /// Sets the answer of `eth_blockNumber` (and the ledger's block).
    pub fn set_block_number(&self, n: u64) {
        let mut state = self.state.lock().unwrap();
        state.block_number = n;
        if let Some(ledger) = &state.ledger {
            ledger.lock().unwrap().block = n;
        }
    }

    /// The contracts' state of a [`chain_with`] chain.
    pub fn ledger(&self) -> Arc<Mutex<Ledger>> {
        self.state
            .lock()
            .unwrap()
            .ledger
            .clone()
            .expect("a chain built by chain_with")
    }

    /// Sets the payer's USDFC deposited in FilecoinPay.
    pub fn set_funds(&self, payer: Address, funds: U256) {
        self.ledger()
            .lock()
            .unwrap()
            .accounts
            .entry(payer)
            .or_default()
            .funds = funds;
    }

    /// Answers calls of `C` to `to` with `f(decoded arguments)`, or reverts
    /// with its error.
    pub fn on_call_result<C, F>(&self, to: Address, f: F)
    where
        C: SolCall + 'static,
        F: Fn(C) -> Result<C::Return, String> + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(move |input: &[u8]| match C::abi_decode(input) {
            Ok(call) => match f(call) {
                Ok(answer) => CallAnswer::Return(C::abi_encode_returns(&answer)),
                Err(reason) => CallAnswer::Revert(reason),
            },
            Err(e) => CallAnswer::Revert(format!("mock cannot decode {}: {e}", C::SIGNATURE)),
        });
        let mut state = self.state.lock().unwrap();
        state.handlers.insert((to, C::SELECTOR), handler);
        state.names.insert(C::SELECTOR, C::SIGNATURE);
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
        "eth_sendTransaction" => {
            // A mock Curio's transaction (the real one estimates gas, then
            // sends a signed transaction; one call here runs it).
            guard.log.push(method.into());
            let Some(ledger) = guard.ledger.clone() else {
                return err(-32601, "this mock chain has no ledger".into(), None);
            };
            drop(guard);
            let tx = params.get(0).cloned().unwrap_or(Value::Null);
            let address = |key: &str| -> Option<Address> {
                tx.get(key)
                    .and_then(|a| serde_json::from_value(a.clone()).ok())
            };
            let input: Option<Bytes> = tx
                .get("input")
                .or_else(|| tx.get("data"))
                .and_then(|d| serde_json::from_value(d.clone()).ok());
            let new_set = tx.get("mockDataSetId").and_then(Value::as_u64).unwrap_or(0);
            let (Some(from), Some(to), Some(input)) = (address("from"), address("to"), input)
            else {
                return err(
                    -32602,
                    "eth_sendTransaction needs from, to and input".into(),
                    None,
                );
            };
            let outcome = ledger.lock().unwrap().execute(from, to, &input, new_set);
            match outcome {
                Ok(()) => ok(json!(format!("0x{:064x}", new_set + 0xabc000))),
                Err(reason) => {
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
use ledger::{Account, Approval, Prices, SetState};

pub const KEY: &str = "0x1234123412341234123412341234123412341234123412341234123412341234";
pub const PAYER: Address = address!("fF06ad5d076fa274B49C297f3fE9e29B5bA9AaDC");
const PROVIDER: Address = address!("1111111111111111111111111111111111111111");
const PAYEE: Address = address!("2222222222222222222222222222222222222222");
pub const VIEW: Address = address!("3333333333333333333333333333333333333333");
const CALIB: u64 = 314_159;

pub fn usdfc(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// `n / 10_000` USDFC.
pub fn usdfc_bp(n: u64) -> U256 {
    usdfc(n) / U256::from(10_000)
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
    /// Leaves PDPVerifier counts in it (its rail's rate follows them).
    pub leaves: u64,
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
    /// The deployment's prices ([`mock_prices`] unless a test says).
    pub prices: Prices,
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
            prices: mock_prices(),
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

/// The mock deployment's prices: every figure differs from FWSS v1.3.0's
/// documented list (`FeeSchedule::documented()`: 2.5 per TiB-month, 0.024
/// per data set-month, create 0.025, add 0.0005 + 0.0003 per piece,
/// reserve 0.1 / 0.005, CDN 0.7 + 0.3, 30-day lockup), so a reader that
/// ignored the chain's numbers is caught.
pub fn mock_prices() -> Prices {
    Prices {
        storage_per_tib_per_month: usdfc(3),
        dataset_fee_per_month: usdfc_bp(360),
        create_data_set_fee: usdfc_bp(300),
        add_pieces_base_fee: usdfc_bp(6),
        add_pieces_per_piece_fee: usdfc_bp(4),
        lifecycle_reserve_target: usdfc_bp(1200),
        replenish_threshold: usdfc_bp(60),
        default_lockup_period: U256::from(2880 * 20),
        cdn_lockup_amount: usdfc_bp(6000),
        cache_miss_lockup_amount: usdfc_bp(2500),
        cdn_lockup_period: U256::from(2880 * 5),
    }
}

/// `prices` as the state view's `getPriceList()` returns them.
pub fn price_list_of(prices: &Prices) -> IFwssView::PriceList {
    IFwssView::PriceList {
        token: Network::Calibration.contracts().usdfc,
        rates: IFwssView::PriceListRates {
            storagePerTibPerMonth: prices.storage_per_tib_per_month,
            datasetFeePerMonth: prices.dataset_fee_per_month,
            cdnEgressPerTib: usdfc(7),
            cacheMissEgressPerTib: usdfc(7),
        },
        fees: IFwssView::PriceListFees {
            createDataSetFee: prices.create_data_set_fee,
            addPiecesBaseFee: prices.add_pieces_base_fee,
            addPiecesPerPieceFee: prices.add_pieces_per_piece_fee,
            schedulePieceRemovalsFee: usdfc(2) / U256::from(1000),
            terminateFee: usdfc(112) / U256::from(100_000),
        },
        lockups: IFwssView::PriceListLockups {
            lifecycleReserveTarget: prices.lifecycle_reserve_target,
            replenishThreshold: prices.replenish_threshold,
            defaultLockupPeriod: prices.default_lockup_period,
            cdnLockupAmount: prices.cdn_lockup_amount,
            cacheMissLockupAmount: prices.cache_miss_lockup_amount,
            cdnLockupPeriod: prices.cdn_lockup_period,
        },
    }
}

/// The mock deployment's `getPriceList()` answer.
pub fn price_list() -> IFwssView::PriceList {
    price_list_of(&mock_prices())
}

/// Tells the mock Curio at `service_url` which chain runs its transactions
/// (`POST /mock/chain`, a route of the mock only). Anything that is not a
/// mock Curio just does not answer 204.
async fn link_curio(service_url: &str, rpc_url: &str, from: Address, fwss: Address, chain_id: u64) {
    let Some(host) = service_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
    else {
        return;
    };
    let Ok(mut stream) = TcpStream::connect(host).await else {
        return;
    };
    let body =
        json!({"rpcUrl": rpc_url, "from": from, "fwss": fwss, "chainId": chain_id}).to_string();
    let request = format!(
        "POST /mock/chain HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
    }
}

/// The view's 13-word row of set `id`.
fn info_view(id: u64, set: &SetState) -> IFwssView::DataSetInfoView {
    IFwssView::DataSetInfoView {
        pdpRailId: U256::from(100 + id),
        cacheMissRailId: U256::from(if set.with_cdn { 200 + id } else { 0 }),
        cdnRailId: U256::from(if set.with_cdn { 300 + id } else { 0 }),
        payer: set.payer,
        payee: payee_address(set.provider_id),
        serviceProvider: provider_address(set.provider_id),
        commissionBps: U256::ZERO,
        clientDataSetId: set.client_data_set_id,
        pdpEndEpoch: U256::ZERO,
        providerId: U256::from(set.provider_id),
        pendingOneTimePayments: alloy::primitives::Uint::from(set.pending.saturating_to::<u64>()),
        lifecycleReserveBalance: alloy::primitives::Uint::from(set.reserve.saturating_to::<u64>()),
        dataSetId: U256::from(id),
    }
}

/// A calibration chain as `spec` says, on a [`Ledger`]: registry
/// (`getProviderWithProduct`, `getAllActiveProviders`), FWSS and its view
/// (`getClientDataSets` in the current or legacy layout, metadata,
/// `getPriceList`), PDPVerifier, FilecoinPay and USDFC, each answering per
/// argument; the providers' mock Curios are linked to it.
pub async fn chain_with(spec: ChainSpec) -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let c = Network::Calibration.contracts();
    rpc.set_block_number(1_000);
    rpc.set_balance(PAYER, U256::from(10u64).pow(U256::from(18)));
    let mut ledger = Ledger {
        chain_id: CALIB,
        fwss: c.fwss,
        usdfc: c.usdfc,
        prices: spec.prices.clone(),
        block: 1_000,
        accounts: HashMap::new(),
        approvals: HashMap::new(),
        wallets: HashMap::new(),
        providers: spec
            .providers
            .iter()
            .map(|(id, _)| (provider_address(*id), (*id, payee_address(*id))))
            .collect(),
        sets: Default::default(),
        nonces: Default::default(),
        transactions: Vec::new(),
    };
    if spec.funded {
        ledger.wallets.insert(PAYER, usdfc(20));
        ledger.accounts.insert(
            PAYER,
            Account {
                funds: spec.funds,
                lockup_last_settled_at: U256::from(1_000),
                ..Account::default()
            },
        );
        ledger.approvals.insert(
            PAYER,
            Approval {
                is_approved: true,
                rate_allowance: U256::MAX / U256::from(2),
                lockup_allowance: U256::MAX / U256::from(2),
                max_lockup_period: spec.prices.default_lockup_period,
                ..Approval::default()
            },
        );
    }
    for d in &spec.data_sets {
        let rate = ledger.storage_rate(d.leaves);
        ledger.sets.insert(
            d.data_set_id,
            SetState {
                payer: PAYER,
                provider_id: d.provider_id,
                client_data_set_id: U256::from(d.client_data_set_id),
                metadata: vec![("withCDN".into(), String::new())],
                leaves: d.leaves,
                pieces: d.leaves.min(1),
                reserve: U256::from(d.reserve),
                pending: U256::ZERO,
                rate,
                with_cdn: true,
            },
        );
        ledger
            .nonces
            .insert((PAYER, U256::from(d.client_data_set_id)));
        // The existing set's rail already holds its rate's lockup.
        let period = spec.prices.default_lockup_period;
        if let Some(a) = ledger.accounts.get_mut(&PAYER) {
            a.lockup_rate += rate;
            a.lockup_current += rate * period;
            a.funds += rate * period;
        }
    }
    let ledger = Arc::new(Mutex::new(ledger));
    rpc.state.lock().unwrap().ledger = Some(ledger.clone());

    let providers = spec.providers.clone();
    rpc.on_call_result::<IServiceProviderRegistry::getProviderWithProductCall, _>(
        c.sp_registry,
        move |q| {
            let id = q.providerId.to::<u64>();
            let Some(url) = providers
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, u)| u.clone())
            else {
                return Err(format!("ProviderNotFound({id})"));
            };
            Ok(IServiceProviderRegistry::ProviderWithProduct {
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
            })
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
    // The payer's sets, paged as the view pages them (by offset and limit).
    let page = {
        let ledger = ledger.clone();
        move |client: Address, offset: U256, limit: U256| -> Vec<(u64, SetState)> {
            let ledger = ledger.lock().unwrap();
            ledger
                .sets
                .iter()
                .filter(|(_, s)| s.payer == client)
                .skip(offset.saturating_to::<usize>())
                .take(limit.saturating_to::<usize>())
                .map(|(id, s)| (*id, s.clone()))
                .collect()
        }
    };
    if spec.legacy_view {
        rpc.on_call::<IFwssViewLegacy::getClientDataSetsCall, _>(VIEW, move |q| {
            page(q.client, q.offset, q.limit)
                .iter()
                .map(|(id, s)| {
                    let v = info_view(*id, s);
                    IFwssViewLegacy::DataSetInfoView {
                        pdpRailId: v.pdpRailId,
                        cacheMissRailId: v.cacheMissRailId,
                        cdnRailId: v.cdnRailId,
                        payer: v.payer,
                        payee: v.payee,
                        serviceProvider: v.serviceProvider,
                        commissionBps: v.commissionBps,
                        clientDataSetId: v.clientDataSetId,
                        pdpEndEpoch: v.pdpEndEpoch,
                        providerId: v.providerId,
                        dataSetId: v.dataSetId,
                    }
                })
                .collect()
        });
    } else {
        rpc.on_call::<IFwssView::getClientDataSetsCall, _>(VIEW, move |q| {
            page(q.client, q.offset, q.limit)
                .iter()
                .map(|(id, s)| info_view(*id, s))
                .collect()
        });
    }
    let l = ledger.clone();
    rpc.on_call::<IFwssView::getAllDataSetMetadataCall, _>(VIEW, move |q| {
        let ledger = l.lock().unwrap();
        let meta = ledger
            .sets
            .get(&q.dataSetId.saturating_to::<u64>())
            .map(|s| s.metadata.clone())
            .unwrap_or_default();
        IFwssView::getAllDataSetMetadataReturn {
            keys: meta.iter().map(|(k, _)| k.clone()).collect(),
            values: meta.into_iter().map(|(_, v)| v).collect(),
        }
    });
    if spec.price_list {
        let list = price_list_of(&spec.prices);
        rpc.on_call::<IFwssView::getPriceListCall, _>(VIEW, move |_| list.clone());
    }
    let live = |ledger: &Arc<Mutex<Ledger>>, id: U256| -> Option<SetState> {
        ledger
            .lock()
            .unwrap()
            .sets
            .get(&id.saturating_to::<u64>())
            .cloned()
    };
    let l = ledger.clone();
    rpc.on_call::<IPdpVerifier::dataSetLiveCall, _>(c.pdp_verifier, move |q| {
        live(&l, q.setId).is_some()
    });
    let l = ledger.clone();
    let fwss = c.fwss;
    rpc.on_call_result::<IPdpVerifier::getDataSetListenerCall, _>(c.pdp_verifier, move |q| {
        live(&l, q.setId)
            .map(|_| fwss)
            .ok_or_else(|| "Data set not live".to_string())
    });
    let l = ledger.clone();
    rpc.on_call_result::<IPdpVerifier::getActivePieceCountCall, _>(c.pdp_verifier, move |q| {
        live(&l, q.setId)
            .map(|s| U256::from(s.pieces))
            .ok_or_else(|| "Data set not live".to_string())
    });
    let l = ledger.clone();
    rpc.on_call_result::<IPdpVerifier::getDataSetLeafCountCall, _>(c.pdp_verifier, move |q| {
        live(&l, q.setId)
            .map(|s| U256::from(s.leaves))
            .ok_or_else(|| "DataSetNotLive()".to_string())
    });
    let l = ledger.clone();
    rpc.on_call::<IErc20::balanceOfCall, _>(c.usdfc, move |q| {
        l.lock()
            .unwrap()
            .wallets
            .get(&q.owner)
            .copied()
            .unwrap_or_default()
    });
    let l = ledger.clone();
    rpc.on_call::<IFilecoinPay::accountsCall, _>(c.filecoin_pay, move |q| {
        let ledger = l.lock().unwrap();
        let a = if q.token == ledger.usdfc {
            ledger.accounts.get(&q.owner).cloned().unwrap_or_default()
        } else {
            Account::default()
        };
        IFilecoinPay::accountsReturn {
            funds: a.funds,
            lockupCurrent: a.lockup_current,
            lockupRate: a.lockup_rate,
            lockupLastSettledAt: a.lockup_last_settled_at,
        }
    });
    let l = ledger.clone();
    rpc.on_call::<IFilecoinPay::operatorApprovalsCall, _>(c.filecoin_pay, move |q| {
        let ledger = l.lock().unwrap();
        let a = if q.token == ledger.usdfc && q.operator == ledger.fwss {
            ledger.approvals.get(&q.client).cloned().unwrap_or_default()
        } else {
            Approval::default()
        };
        IFilecoinPay::operatorApprovalsReturn {
            isApproved: a.is_approved,
            rateAllowance: a.rate_allowance,
            lockupAllowance: a.lockup_allowance,
            rateUsage: a.rate_usage,
            lockupUsage: a.lockup_usage,
            maxLockupPeriod: a.max_lockup_period,
        }
    });
    for (id, url) in &spec.providers {
        link_curio(url, &rpc.url(), provider_address(*id), c.fwss, CALIB).await;
    }
    rpc
}
