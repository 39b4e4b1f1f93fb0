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
use beam_edge::upload::chain::abi::{
    IErc20, IFilecoinPay, IFwss, IFwssView, IServiceProviderRegistry,
};
use beam_edge::upload::chain::Network;

pub const KEY: &str = "0x1234123412341234123412341234123412341234123412341234123412341234";
pub const PAYER: Address = address!("fF06ad5d076fa274B49C297f3fE9e29B5bA9AaDC");
const PROVIDER: Address = address!("1111111111111111111111111111111111111111");
const PAYEE: Address = address!("2222222222222222222222222222222222222222");
const VIEW: Address = address!("3333333333333333333333333333333333333333");
const CALIB: u64 = 314_159;

fn usdfc(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// A calibration chain where provider 7 serves at `curio_url` and the payer
/// has no data set yet; `funded` controls the wallet.
pub async fn chain(curio_url: String, funded: bool) -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let c = Network::Calibration.contracts();
    rpc.set_block_number(1_000);
    rpc.set_balance(PAYER, U256::from(10u64).pow(U256::from(18)));
    rpc.on_call::<IServiceProviderRegistry::getProviderWithProductCall, _>(
        c.sp_registry,
        move |q| {
            assert_eq!(q.providerId, U256::from(7));
            IServiceProviderRegistry::ProviderWithProduct {
                providerId: U256::from(7),
                providerInfo: IServiceProviderRegistry::ServiceProviderInfoView {
                    serviceProvider: PROVIDER,
                    payee: PAYEE,
                    name: "mock curio".into(),
                    description: String::new(),
                    isActive: true,
                },
                product: IServiceProviderRegistry::ServiceProduct {
                    productType: 0,
                    capabilityKeys: vec!["serviceURL".into()],
                    isActive: true,
                },
                productCapabilityValues: vec![Bytes::from(curio_url.clone().into_bytes())],
            }
        },
    );
    rpc.on_call::<IFwss::viewContractAddressCall, _>(c.fwss, |_| VIEW);
    rpc.on_call::<IFwssView::getClientDataSetsCall, _>(VIEW, |_| {
        Vec::<IFwssView::DataSetInfoView>::new()
    });
    rpc.on_call::<IErc20::balanceOfCall, _>(
        c.usdfc,
        move |_| if funded { usdfc(20) } else { U256::ZERO },
    );
    rpc.on_call::<IFilecoinPay::accountsCall, _>(c.filecoin_pay, move |_| {
        IFilecoinPay::accountsReturn {
            funds: if funded { usdfc(10) } else { U256::ZERO },
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
