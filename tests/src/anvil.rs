//! Real EVM nodes for the payment tests: anvil from npm (`package.json`; its native binary, not
//! the node wrapper, which doesn't forward a kill), one process per chain id, stopped on drop.
//! `--slots-in-an-epoch 1` makes the `finalized` block the head minus two. Transactions are sent
//! from anvil's unlocked dev accounts with `eth_sendTransaction`, so tests need no keys.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::workspace;

pub fn anvil_binary() -> PathBuf {
    workspace().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// anvil's first dev accounts (from its default mnemonic), each with 10,000 ETH.
pub const DEV: [&str; 3] =
    ["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"];

pub struct Anvil {
    child: Child,
    automine: std::cell::Cell<bool>,
    pub url: String,
    pub chain_id: u64,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The committed bytecode of a test contract (`tests/contracts/build.sh` makes it).
pub fn bytecode(contract: &str) -> String {
    let path = workspace().join("tests/contracts").join(format!("{contract}.bin"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_owned()
}

fn word(hex_or_number: &str) -> String {
    format!("{:0>64}", hex_or_number.trim_start_matches("0x"))
}

fn u256(n: u128) -> String {
    format!("{n:064x}")
}

impl Anvil {
    pub fn start(chain_id: u64) -> Anvil {
        Anvil::start_on(chain_id, 0)
    }

    /// A node on `port` (0: any free port): a test can name a node's URL before it runs.
    pub fn start_on(chain_id: u64, port: u16) -> Anvil {
        let bin = anvil_binary();
        assert!(bin.exists(), "{} is missing: run `make test` (npm installs it)", bin.display());
        let mut child = Command::new(bin)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--chain-id", &chain_id.to_string(), "--slots-in-an-epoch", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("Listening on ") {
                        break a.trim().to_owned();
                    }
                }
                _ => panic!("anvil exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Anvil { child, automine: std::cell::Cell::new(true), url: format!("http://{address}"), chain_id }
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut response = ureq::post(&self.url).send_json(&body).unwrap_or_else(|e| panic!("{method}: {e}"));
        let v: Value = response.body_mut().read_json().expect("json-rpc response");
        if let Some(err) = v.get("error") {
            panic!("{method}: {err}");
        }
        v["result"].clone()
    }

    /// Sends a transaction from an unlocked account; its hash. Unless automining is off, waits
    /// until it is mined. With `gas`, no estimate is made, so a transaction that reverts is still
    /// mined.
    pub fn send(&self, from: &str, to: Option<&str>, data: &str, value: u128, gas: Option<u64>) -> String {
        let mut tx = json!({"from": from, "data": data, "value": format!("0x{value:x}")});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("0x{gas:x}"));
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).as_str().expect("tx hash").to_owned();
        if self.automine.get() {
            self.receipt(&hash);
        }
        hash
    }

    /// The receipt of a mined transaction (waits up to 10 s for it).
    pub fn receipt(&self, hash: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = self.rpc("eth_getTransactionReceipt", json!([hash]));
            if !r.is_null() || std::time::Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn block_number(&self) -> u64 {
        u64::from_str_radix(self.rpc("eth_blockNumber", json!([])).as_str().expect("number").trim_start_matches("0x"), 16).expect("hex")
    }

    pub fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("0x{blocks:x}")]));
    }

    /// Replaces the last `depth` blocks with empty ones (their transactions are gone).
    pub fn reorg(&self, depth: u64) {
        self.rpc("anvil_reorg", json!([depth, []]));
    }

    pub fn set_automine(&self, on: bool) {
        self.automine.set(on);
        self.rpc("evm_setAutomine", json!([on]));
    }

    /// Deploys a contract from `tests/contracts`, with ABI-encoded constructor arguments.
    pub fn deploy(&self, contract: &str, args: &str) -> String {
        let hash = self.send(DEV[0], None, &format!("0x{}{args}", bytecode(contract)), 0, None);
        self.receipt(&hash)["contractAddress"].as_str().expect("contract address").to_owned()
    }

    /// Puts Multicall3's code (the part the watcher uses, `Multicall3Subset`) at Multicall3's
    /// address, where it is on the real chains.
    pub fn install_multicall3(&self) {
        let deployed = self.deploy("Multicall3Subset", "");
        let code = self.rpc("eth_getCode", json!([deployed, "latest"]));
        self.rpc("anvil_setCode", json!([gocoffee_payments::reader::MULTICALL3.to_string(), code]));
    }

    /// A [`TestToken`](../../contracts/TestToken.sol) with this symbol and decimals.
    pub fn deploy_token(&self, symbol: &str, decimals: u8) -> String {
        // constructor(string name, string symbol, uint8 decimals): two dynamic strings.
        let text = |s: &str| format!("{}{:0<64}", u256(s.len() as u128), s.bytes().map(|b| format!("{b:02x}")).collect::<String>());
        let args = format!("{}{}{}{}{}", u256(0x60), u256(0xa0), u256(u128::from(decimals)), text(&format!("Test {symbol}")), text(symbol));
        self.deploy("TestToken", &args)
    }

    pub fn mint(&self, token: &str, to: &str, amount: u128) -> String {
        // mint(address,uint256)
        self.send(DEV[0], Some(token), &format!("0x40c10f19{}{}", word(to), u256(amount)), 0, None)
    }

    pub fn transfer_token(&self, token: &str, from: &str, to: &str, amount: u128, gas: Option<u64>) -> String {
        // transfer(address,uint256)
        self.send(from, Some(token), &format!("0xa9059cbb{}{}", word(to), u256(amount)), 0, gas)
    }

    pub fn pay_native(&self, from: &str, to: &str, amount: u128) -> String {
        self.send(from, Some(to), "0x", amount, None)
    }
}
