//! Chain access for uploads: EIP-712 extraData against the reference
//! client's vectors, key handling, and chain reads through a real JSON-RPC
//! server on loopback (tests/common_rpc).

mod common_rpc;

use alloy::primitives::{address, Address, Bytes, U256};
use alloy::sol_types::{SolStruct, SolValue};
use beam_edge::chain::abi::{
    AddPieces, Cid, CreateDataSet, IErc20, IFilecoinPay, IFwss, IFwssView, IPdpVerifier,
    IServiceProviderRegistry, MetadataEntry, PieceMetadata,
};
use beam_edge::chain::*;
use common_rpc::MockRpc;

// /work/shared/vectors/eip712-calibration.json (synapse-core 0.5.2 + viem), inlined.
const VECTOR_KEY: &str = "0x1234123412341234123412341234123412341234123412341234123412341234";
const VECTOR_SIGNER: Address = address!("fF06ad5d076fa274B49C297f3fE9e29B5bA9AaDC");
const VECTOR_PAYEE: Address = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
const VECTOR_CID: &str = "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";
const VECTOR_CREATE: &str = "0x000000000000000000000000ff06ad5d076fa274b49c297f3fe9e29b5ba9aadc000000000000000000000000000000000000000000000000000000000000303900000000000000000000000000000000000000000000000000000000000000a0000000000000000000000000000000000000000000000000000000000000012000000000000000000000000000000000000000000000000000000000000001800000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000077769746843444e000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000041d4da69045a8b1a8f63f6e860091a1729c24216eeb479b70933ee9a0a1d8646f6394f3c0707ceaf0c3097fc182bb1ccae601b98c2784996cbca306a2ef564e5011b00000000000000000000000000000000000000000000000000000000000000";
const VECTOR_ADD: &str = "0x0000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000008000000000000000000000000000000000000000000000000000000000000000e000000000000000000000000000000000000000000000000000000000000001400000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000041c0c45fb8e08dbc27623666bec4297486c6d663ee15f44c52567555cdd94dce135b07e7947c7f689d74368baa1dbc4ad640f99f58fbb2ca5208194c53740d3b3d1c00000000000000000000000000000000000000000000000000000000000000";

const CALIB: u64 = 314_159;

fn vector_key() -> PayerKey {
    parse_private_key(VECTOR_KEY, "test").unwrap()
}

fn fwss() -> Address {
    Network::Calibration.contracts().fwss
}

/// RFC 4648 base32, lowercase, no padding: the multibase `b` body of a CID.
fn cid_bytes(cid: &str) -> Vec<u8> {
    let body = cid.strip_prefix('b').expect("multibase base32");
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in body.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        } as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

type CreateParams = (Address, U256, Vec<String>, Vec<String>, Bytes);
type AddParams = (U256, Vec<Vec<String>>, Vec<Vec<String>>, Bytes);

fn recover(signature: &Bytes, hash: alloy::primitives::B256) -> Address {
    let sig = alloy::primitives::Signature::try_from(signature.as_ref()).unwrap();
    sig.recover_address_from_prehash(&hash).unwrap()
}

#[test]
fn cid_decoder_reads_the_vector_cid() {
    let bytes = cid_bytes(VECTOR_CID);
    // CIDv1, raw (0x55), multihash 0x1011 (varint 0x91 0x20), 34-byte digest.
    assert_eq!(&bytes[..4], &[0x01, 0x55, 0x91, 0x20]);
    assert_eq!(bytes[4] as usize, bytes.len() - 5);
}

#[test]
fn create_data_set_extra_data_matches_reference_client_bytes() {
    let key = vector_key();
    assert_eq!(key.address(), VECTOR_SIGNER);
    let extra = create_data_set_extra_data(
        &key,
        CALIB,
        fwss(),
        U256::from(12345),
        VECTOR_PAYEE,
        &cdn_metadata(),
    )
    .unwrap();
    assert_eq!(extra.to_string(), VECTOR_CREATE);
}

#[test]
fn add_pieces_extra_data_matches_reference_client_bytes() {
    let pieces = vec![(cid_bytes(VECTOR_CID), vec![])];
    let extra = add_pieces_extra_data(
        &vector_key(),
        CALIB,
        fwss(),
        U256::from(12345),
        U256::from(1),
        &pieces,
    )
    .unwrap();
    assert_eq!(extra.to_string(), VECTOR_ADD);
}

#[test]
fn create_extra_data_decodes_to_sorted_fields_and_recovers_to_payer() {
    let key = vector_key();
    let id = random_u256();
    let payee = VECTOR_PAYEE;
    let metadata = meta(&[("zeta", "last"), ("withCDN", ""), ("app", "beam-edge")]);
    let extra = create_data_set_extra_data(&key, CALIB, fwss(), id, payee, &metadata).unwrap();
    let (payer, got_id, keys, values, signature) = CreateParams::abi_decode_params(&extra).unwrap();
    assert_eq!(payer, key.address());
    assert_eq!(got_id, id);
    assert_eq!(keys, ["app", "withCDN", "zeta"]);
    assert_eq!(values, ["beam-edge", "", "last"]);
    assert_eq!(signature.len(), 65);
    let message = CreateDataSet {
        clientDataSetId: id,
        payee,
        metadata: keys
            .iter()
            .zip(&values)
            .map(|(k, v)| MetadataEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    let hash = message.eip712_signing_hash(&fwss_domain(CALIB, fwss()));
    assert_eq!(recover(&signature, hash), key.address());
    // Another chain id is another domain: the signature does not carry over.
    let mainnet_hash = message.eip712_signing_hash(&fwss_domain(314, fwss()));
    assert_ne!(recover(&signature, mainnet_hash), key.address());
}

#[test]
fn vector_create_extra_data_decodes_to_withcdn_empty() {
    let bytes: Bytes = VECTOR_CREATE.parse().unwrap();
    let (payer, id, keys, values, signature) = CreateParams::abi_decode_params(&bytes).unwrap();
    assert_eq!((payer, id), (VECTOR_SIGNER, U256::from(12345)));
    assert_eq!(
        (keys, values),
        (vec!["withCDN".to_string()], vec![String::new()])
    );
    let message = CreateDataSet {
        clientDataSetId: id,
        payee: VECTOR_PAYEE,
        metadata: vec![MetadataEntry {
            key: "withCDN".into(),
            value: String::new(),
        }],
    };
    assert_eq!(
        recover(
            &signature,
            message.eip712_signing_hash(&fwss_domain(CALIB, fwss()))
        ),
        VECTOR_SIGNER
    );
}

#[test]
fn add_extra_data_decodes_per_piece_metadata_and_recovers_to_payer() {
    let key = vector_key();
    let cid = cid_bytes(VECTOR_CID);
    let pieces = vec![
        (cid.clone(), meta(&[("name", "a.mp4"), ("b", "2")])),
        (cid.clone(), vec![]),
    ];
    let (data_set, nonce) = (random_u256(), random_u256());
    let extra = add_pieces_extra_data(&key, CALIB, fwss(), data_set, nonce, &pieces).unwrap();
    let (got_nonce, keys, values, signature) = AddParams::abi_decode_params(&extra).unwrap();
    assert_eq!(got_nonce, nonce);
    assert_eq!(
        keys,
        vec![vec!["b".to_string(), "name".to_string()], vec![]]
    );
    assert_eq!(
        values,
        vec![vec!["2".to_string(), "a.mp4".to_string()], vec![]]
    );
    let entries = |i: usize| -> Vec<MetadataEntry> {
        keys[i]
            .iter()
            .zip(&values[i])
            .map(|(k, v)| MetadataEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    };
    let message = AddPieces {
        clientDataSetId: data_set,
        nonce,
        pieceData: vec![
            Cid {
                data: cid.clone().into(),
            },
            Cid { data: cid.into() },
        ],
        pieceMetadata: vec![
            PieceMetadata {
                pieceIndex: U256::ZERO,
                metadata: entries(0),
            },
            PieceMetadata {
                pieceIndex: U256::from(1),
                metadata: entries(1),
            },
        ],
    };
    assert_eq!(
        recover(
            &signature,
            message.eip712_signing_hash(&fwss_domain(CALIB, fwss()))
        ),
        key.address()
    );
}

#[test]
fn create_and_add_extra_data_wraps_both_parts() {
    let create: Bytes = VECTOR_CREATE.parse().unwrap();
    let add: Bytes = VECTOR_ADD.parse().unwrap();
    let both = create_and_add_extra_data(create.clone(), add.clone());
    let (c, a) = <(Bytes, Bytes)>::abi_decode_params(&both).unwrap();
    assert_eq!((c, a), (create, add));
    // Head: two offsets (0x40, then past the first bytes value).
    assert_eq!(both[31], 0x40);
}

#[test]
fn metadata_limits_are_enforced_with_clear_errors() {
    let key = vector_key();
    let cid = cid_bytes(VECTOR_CID);
    let create = |m: &[(String, String)]| {
        create_data_set_extra_data(&key, CALIB, fwss(), U256::from(1), VECTOR_PAYEE, m)
    };
    let add = |p: &[beam_edge::chain::PieceToAdd]| {
        add_pieces_extra_data(&key, CALIB, fwss(), U256::from(1), U256::from(2), p)
    };

    let eleven: Vec<_> = (0..11).map(|i| (format!("k{i}"), String::new())).collect();
    let err = create(&eleven).unwrap_err();
    assert_eq!(err, ExtraDataError::TooManyDataSetKeys { count: 11 });
    assert!(err.to_string().contains("at most 10"), "{err}");
    assert!(create(&eleven[..10]).is_ok());

    let long_key = "k".repeat(33);
    assert_eq!(
        create(&meta(&[(long_key.as_str(), "")])).unwrap_err(),
        ExtraDataError::KeyTooLong {
            key: long_key,
            len: 33
        }
    );
    assert!(create(&meta(&[("k".repeat(32).as_str(), "")])).is_ok());
    assert_eq!(
        create(&meta(&[("a", "1"), ("a", "2")])).unwrap_err(),
        ExtraDataError::DuplicateKey { key: "a".into() }
    );

    let four = meta(&[("a", ""), ("b", ""), ("c", ""), ("d", "")]);
    assert_eq!(
        add(&[(cid.clone(), four.clone())]).unwrap_err(),
        ExtraDataError::TooManyPieceKeys { piece: 0, count: 4 }
    );
    assert!(add(&[(cid.clone(), four[..3].to_vec())]).is_ok());
    let v97 = "v".repeat(97);
    let err = add(&[(cid.clone(), meta(&[("name", v97.as_str())]))]).unwrap_err();
    assert_eq!(
        err,
        ExtraDataError::ValueTooLong {
            key: "name".into(),
            len: 97,
            max: 96
        }
    );
    assert!(add(&[(cid.clone(), meta(&[("name", "v".repeat(96).as_str())]))]).is_ok());

    let forty_one = vec![(cid.clone(), vec![]); 41];
    assert_eq!(
        add(&forty_one).unwrap_err(),
        ExtraDataError::TooManyPieces { count: 41 }
    );
    assert!(add(&forty_one[..40]).is_ok());
    assert_eq!(add(&[]).unwrap_err(), ExtraDataError::NoPieces);
}

#[test]
fn random_ids_are_fresh_256_bit_values() {
    let values: std::collections::HashSet<U256> = (0..64).map(|_| random_u256()).collect();
    assert_eq!(values.len(), 64);
    // 64 draws all below 2^192 would mean the top 64 bits are not random.
    assert!(values.iter().any(|v| v.bit_len() > 192));
}

#[test]
fn private_key_parsing_trims_and_redacts() {
    let key = parse_private_key(&format!("  {VECTOR_KEY}\n"), "test").unwrap();
    assert_eq!(key.address(), VECTOR_SIGNER);
    let bare = parse_private_key(VECTOR_KEY.trim_start_matches("0x"), "test").unwrap();
    assert_eq!(bare.address(), VECTOR_SIGNER);
    let debug = format!("{key:?}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(!debug.to_lowercase().contains("12341234"), "{debug}");

    let secret_ish = "0x12341234123412341234123412341234123412341234123412341234123412zz";
    let err = parse_private_key(secret_ish, "env BEAM_EDGE_PRIVATE_KEY").unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("non-hex"), "{text}");
    assert!(!text.contains("1234123412"), "{text}");
    let short = parse_private_key("0x1234", "test").unwrap_err().to_string();
    assert!(
        short.contains("64 hex digits") && !short.contains("0x1234"),
        "{short}"
    );
    let zero = parse_private_key(&format!("0x{}", "0".repeat(64)), "test").unwrap_err();
    assert!(zero.to_string().contains("secp256k1"), "{zero}");
}

#[test]
fn load_signer_reads_key_file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payer.key");
    std::fs::write(&path, format!("{VECTOR_KEY}\n")).unwrap();
    assert_eq!(load_signer(Some(&path)).unwrap().address(), VECTOR_SIGNER);

    let missing = dir.path().join("absent.key");
    let err = load_signer(Some(&missing)).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Unreadable {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{err}"
    );

    std::fs::write(&path, "not a key at all").unwrap();
    let err = load_signer(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("payer.key") && !err.contains("not a key at all"),
        "{err}"
    );

    // The only test that touches the environment.
    std::env::remove_var(PRIVATE_KEY_ENV);
    assert!(matches!(load_signer(None), Err(KeyError::Missing)));
    std::env::set_var(PRIVATE_KEY_ENV, format!(" {VECTOR_KEY} "));
    assert_eq!(load_signer(None).unwrap().address(), VECTOR_SIGNER);
    std::env::remove_var(PRIVATE_KEY_ENV);
}

#[test]
fn network_table_matches_filecoin_md() {
    assert_eq!(Network::from_chain_id(314), Some(Network::Mainnet));
    assert_eq!(Network::from_chain_id(314_159), Some(Network::Calibration));
    assert_eq!(Network::from_chain_id(1), None);
    assert_eq!(
        Network::Mainnet.contracts().fwss,
        address!("8408502033C418E1bbC97cE9ac48E5528F371A9f")
    );
    assert_eq!(
        Network::Calibration.contracts().usdfc,
        address!("b3042734b608a1B16e9e86B374A3f3e389B4cDf0")
    );
    assert_eq!(
        Network::from_name("calibration"),
        Some(Network::Calibration)
    );
}

#[test]
fn https_rpc_url_builds_a_reader_without_a_tls_panic() {
    let reader = ChainReader::new(Network::Mainnet.default_rpc_url(), Network::Mainnet).unwrap();
    assert_eq!(reader.network(), Network::Mainnet);
    assert!(matches!(
        ChainReader::new("not a url", Network::Mainnet),
        Err(ChainError::BadUrl { .. })
    ));
}

// ---- chain reads through the mock JSON-RPC server ----

const PROVIDER: Address = address!("1111111111111111111111111111111111111111");
const PROVIDER_PAYEE: Address = address!("2222222222222222222222222222222222222222");
const VIEW: Address = address!("3333333333333333333333333333333333333333");
const PAYER: Address = address!("4444444444444444444444444444444444444444");

fn provider_answer(
    id: u64,
    active: bool,
    url: &str,
) -> IServiceProviderRegistry::ProviderWithProduct {
    IServiceProviderRegistry::ProviderWithProduct {
        providerId: U256::from(id),
        providerInfo: IServiceProviderRegistry::ServiceProviderInfoView {
            serviceProvider: PROVIDER,
            payee: PROVIDER_PAYEE,
            name: "ezpdp".into(),
            description: "test provider".into(),
            isActive: true,
        },
        product: IServiceProviderRegistry::ServiceProduct {
            productType: 0,
            capabilityKeys: if active {
                vec!["serviceURL".into(), "location".into()]
            } else {
                vec![]
            },
            isActive: active,
        },
        productCapabilityValues: if active {
            vec![
                Bytes::from(url.as_bytes().to_vec()),
                Bytes::from(b"C=DE".to_vec()),
            ]
        } else {
            vec![]
        },
    }
}

async fn registry_mock() -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let registry = Network::Calibration.contracts().sp_registry;
    rpc.on_call::<IServiceProviderRegistry::getProviderIdByAddressCall, _>(registry, |c| {
        if c.providerAddress == PROVIDER {
            U256::from(7)
        } else {
            U256::ZERO
        }
    });
    rpc.on_call::<IServiceProviderRegistry::getProviderWithProductCall, _>(registry, |c| {
        assert_eq!(c.productType, 0, "PDP product type");
        provider_answer(
            c.providerId.to::<u64>(),
            c.providerId == U256::from(7),
            "https://sp.example.com/",
        )
    });
    rpc
}

#[tokio::test]
async fn chain_id_is_read_and_verified() {
    let rpc = MockRpc::start(CALIB).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    assert_eq!(reader.chain_id().await.unwrap(), CALIB);
    reader.verify_chain().await.unwrap();
    let wrong = ChainReader::new(&rpc.url(), Network::Mainnet).unwrap();
    let err = wrong.verify_chain().await.unwrap_err();
    assert!(
        matches!(err, ChainError::WrongChain { got: 314_159, .. }),
        "{err}"
    );
    assert_eq!(rpc.count("eth_chainId"), 3);
}

#[tokio::test]
async fn provider_lookup_by_address_and_id_gives_service_url_and_payee() {
    let rpc = registry_mock().await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let by_address = reader.provider_by_address(PROVIDER).await.unwrap();
    assert_eq!(by_address.id, U256::from(7));
    assert_eq!(by_address.service_url, "https://sp.example.com");
    assert_eq!(by_address.payee, PROVIDER_PAYEE);
    assert_eq!(by_address.service_provider, PROVIDER);
    assert_eq!(
        by_address.capabilities.get("location").map(|b| b.to_vec()),
        Some(b"C=DE".to_vec())
    );
    let by_id = reader.provider_by_id(U256::from(7)).await.unwrap();
    assert_eq!(by_id, by_address);

    let unknown = reader.provider_by_address(PAYER).await.unwrap_err();
    assert!(
        matches!(unknown, ChainError::ProviderNotFound(_)),
        "{unknown}"
    );
    let no_pdp = reader.provider_by_id(U256::from(8)).await.unwrap_err();
    assert!(
        matches!(no_pdp, ChainError::NoPdpProduct(id) if id == U256::from(8)),
        "{no_pdp}"
    );

    rpc.on_call_revert::<IServiceProviderRegistry::getProviderWithProductCall>(
        Network::Calibration.contracts().sp_registry,
        "Provider does not exist",
    );
    let missing = reader.provider_by_id(U256::from(99)).await.unwrap_err();
    assert!(
        matches!(missing, ChainError::ProviderNotFound(ref s) if s == "id 99"),
        "{missing}"
    );
    assert_eq!(rpc.count("eth_call:getProviderIdByAddress(address)"), 2);
}

fn info(
    data_set_id: u64,
    provider_id: u64,
    cdn_rail: u64,
    end_epoch: u64,
) -> IFwssView::DataSetInfoView {
    IFwssView::DataSetInfoView {
        pdpRailId: U256::from(100 + data_set_id),
        cacheMissRailId: U256::from(cdn_rail),
        cdnRailId: U256::from(cdn_rail),
        payer: PAYER,
        payee: PROVIDER_PAYEE,
        serviceProvider: PROVIDER,
        commissionBps: U256::ZERO,
        clientDataSetId: U256::from(9000 + data_set_id),
        pdpEndEpoch: U256::from(end_epoch),
        providerId: U256::from(provider_id),
        pendingOneTimePayments: alloy::primitives::Uint::from(data_set_id),
        lifecycleReserveBalance: alloy::primitives::Uint::from(1000 + data_set_id),
        dataSetId: U256::from(data_set_id),
    }
}

async fn data_set_mock() -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let contracts = Network::Calibration.contracts();
    rpc.on_call::<IFwss::viewContractAddressCall, _>(contracts.fwss, |_| VIEW);
    rpc.on_call::<IFwssView::getClientDataSetsCall, _>(VIEW, |c| {
        assert_eq!(c.client, PAYER);
        if c.offset > U256::ZERO {
            return vec![];
        }
        vec![
            info(1, 5, 11, 0),  // CDN, other provider
            info(2, 7, 0, 0),   // no CDN at our provider
            info(3, 7, 13, 50), // CDN at our provider, terminated
            info(4, 7, 14, 0),  // CDN at our provider, empty
            info(5, 7, 15, 0),  // CDN at our provider, holds pieces: the pick
            info(6, 7, 16, 0),  // CDN at our provider, not live
            info(8, 7, 18, 0),  // CDN plus extra metadata
        ]
    });
    rpc.on_call::<IFwssView::getAllDataSetMetadataCall, _>(VIEW, |c| {
        let id = c.dataSetId.to::<u64>();
        let (keys, values): (Vec<String>, Vec<String>) = match id {
            2 => (vec![], vec![]),
            8 => (
                vec!["withCDN".into(), "app".into()],
                vec!["".into(), "x".into()],
            ),
            _ => (vec!["withCDN".into()], vec!["".into()]),
        };
        IFwssView::getAllDataSetMetadataReturn { keys, values }
    });
    rpc.on_call::<IPdpVerifier::dataSetLiveCall, _>(contracts.pdp_verifier, |c| {
        c.setId != U256::from(6)
    });
    rpc.on_call::<IPdpVerifier::getDataSetListenerCall, _>(contracts.pdp_verifier, move |_| {
        contracts.fwss
    });
    rpc.on_call::<IPdpVerifier::getActivePieceCountCall, _>(contracts.pdp_verifier, |c| {
        if c.setId == U256::from(5) {
            U256::from(3)
        } else {
            U256::ZERO
        }
    });
    rpc
}

#[tokio::test]
async fn data_sets_are_listed_with_metadata_and_the_cdn_one_at_our_provider_is_reused() {
    let rpc = data_set_mock().await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let sets = reader.client_data_sets(PAYER).await.unwrap();
    assert_eq!(
        sets.iter()
            .map(|d| d.data_set_id.to::<u64>())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 8]
    );
    let five = &sets[4];
    assert_eq!(five.client_data_set_id, U256::from(9005));
    assert_eq!(five.metadata, cdn_metadata());
    assert!(five.has_cdn() && five.is_usable());
    assert_eq!(five.active_piece_count, U256::from(3));
    assert_eq!(
        sets[7 - 1].metadata,
        meta(&[("app", "x"), ("withCDN", "")]),
        "sorted by key"
    );
    assert!(!sets[5].live && !sets[5].is_usable());
    assert!(!sets[1].has_cdn());

    let chosen = reader
        .find_reusable_data_set(PAYER, U256::from(7), &cdn_metadata())
        .await
        .unwrap();
    assert_eq!(chosen.map(|d| d.data_set_id), Some(U256::from(5)));
    // Without set 5 the empty CDN set 4 is next; a provider without one gets None.
    let without_five: Vec<DataSet> = sets
        .iter()
        .filter(|d| d.data_set_id != U256::from(5))
        .cloned()
        .collect();
    assert_eq!(
        choose_reusable_data_set(&without_five, U256::from(7), &cdn_metadata())
            .map(|d| d.data_set_id),
        Some(U256::from(4))
    );
    assert!(choose_reusable_data_set(&sets, U256::from(9), &cdn_metadata()).is_none());
    // No metadata wanted: only the plain set 2 matches exactly.
    assert_eq!(
        choose_reusable_data_set(&sets, U256::from(7), &[]).map(|d| d.data_set_id),
        Some(U256::from(2))
    );
    // A terminated or dead set is never chosen even if it is the only match.
    let dead: Vec<DataSet> = sets
        .iter()
        .filter(|d| [3, 6].contains(&d.data_set_id.to::<u64>()))
        .cloned()
        .collect();
    assert!(choose_reusable_data_set(&dead, U256::from(7), &cdn_metadata()).is_none());
    // The view address is read from FWSS at run time.
    assert!(rpc.count("eth_call:viewContractAddress()") >= 1);
    // A dead set is not asked for its listener.
    assert_eq!(rpc.count("eth_call:getDataSetListener(uint256)"), 6 * 2);
}

fn usdfc(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

async fn wallet_mock(funded: bool, approved: bool) -> MockRpc {
    let rpc = MockRpc::start(CALIB).await;
    let c = Network::Calibration.contracts();
    rpc.set_block_number(1_000);
    if funded {
        rpc.set_balance(PAYER, U256::from(5) * U256::from(10u64).pow(U256::from(17)));
    }
    rpc.on_call::<IErc20::balanceOfCall, _>(c.usdfc, move |q| {
        assert_eq!(q.owner, PAYER);
        if funded {
            usdfc(20)
        } else {
            U256::ZERO
        }
    });
    rpc.on_call::<IFilecoinPay::accountsCall, _>(c.filecoin_pay, move |q| {
        assert_eq!((q.token, q.owner), (c.usdfc, PAYER));
        IFilecoinPay::accountsReturn {
            funds: if funded { usdfc(10) } else { U256::ZERO },
            lockupCurrent: usdfc(1),
            lockupRate: U256::from(10u64).pow(U256::from(15)),
            lockupLastSettledAt: U256::from(900),
        }
    });
    rpc.on_call::<IFilecoinPay::operatorApprovalsCall, _>(c.filecoin_pay, move |q| {
        assert_eq!((q.token, q.client, q.operator), (c.usdfc, PAYER, c.fwss));
        IFilecoinPay::operatorApprovalsReturn {
            isApproved: approved,
            rateAllowance: if approved { U256::MAX } else { U256::ZERO },
            lockupAllowance: if approved { U256::MAX } else { U256::ZERO },
            rateUsage: U256::ZERO,
            lockupUsage: U256::ZERO,
            maxLockupPeriod: U256::from(86_400),
        }
    });
    rpc
}

#[tokio::test]
async fn wallet_report_is_clean_when_funded_and_approved() {
    let rpc = wallet_mock(true, true).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let report = reader.wallet_report(PAYER).await.unwrap();
    assert_eq!(report.usdfc_balance, usdfc(20));
    assert_eq!(report.account.funds, usdfc(10));
    // 10 - (1 + 100 epochs * 0.001) = 8.9 USDFC available at epoch 1000.
    assert_eq!(report.account.available, usdfc(89) / U256::from(10));
    assert!(report.approval.is_approved);
    assert_eq!(report.problems(), Vec::<String>::new());
    assert!(report.is_ready());
    assert_eq!(rpc.count("eth_getBalance"), 1);
    assert_eq!(rpc.count("eth_blockNumber"), 1);
}

#[tokio::test]
async fn wallet_report_lists_fixes_when_unfunded_and_unapproved() {
    let rpc = wallet_mock(false, false).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let report = reader.wallet_report(PAYER).await.unwrap();
    assert_eq!(
        report.account.available,
        U256::ZERO,
        "lockup above funds clamps to 0"
    );
    let problems = report.problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("deposit USDFC into FilecoinPay"),
        "{problems:#?}"
    );
    assert!(problems[0].contains("acquire USDFC"), "{problems:#?}");
    assert!(
        problems[1]
            .starts_with("approve FWSS (0x02925630df557F957f70E112bA06e50965417CA0) as operator"),
        "{problems:#?}"
    );
    assert!(problems[2].contains("send FIL"), "{problems:#?}");
    assert!(!report.is_ready());
}

#[tokio::test]
async fn wallet_report_asks_only_for_the_deposit_when_usdfc_sits_in_the_wallet() {
    let rpc = wallet_mock(true, true).await;
    rpc.on_call::<IFilecoinPay::accountsCall, _>(
        Network::Calibration.contracts().filecoin_pay,
        |_| IFilecoinPay::accountsReturn {
            funds: U256::ZERO,
            lockupCurrent: U256::ZERO,
            lockupRate: U256::ZERO,
            lockupLastSettledAt: U256::ZERO,
        },
    );
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let problems = reader.wallet_report(PAYER).await.unwrap().problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "deposit USDFC into FilecoinPay (0x09a0fDc2723fAd1A7b8e3e00eE5DF73841df55a0)"
        ),
        "{problems:#?}"
    );
    assert!(
        problems[0].contains("20 USDFC in the wallet"),
        "{problems:#?}"
    );
}

#[tokio::test]
async fn wallet_report_refuses_an_rpc_on_another_chain() {
    let rpc = wallet_mock(true, true).await;
    let reader = ChainReader::new(&rpc.url(), Network::Mainnet).unwrap();
    let err = reader.wallet_report(PAYER).await.unwrap_err();
    assert!(err.to_string().contains("expected mainnet (314)"), "{err}");
}

#[tokio::test]
async fn an_unmocked_contract_call_surfaces_as_a_named_revert() {
    let rpc = MockRpc::start(CALIB).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let err = reader.usdfc_balance(PAYER).await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Reverted {
                call: "USDFC.balanceOf",
                ..
            }
        ),
        "{err}"
    );
}

fn mock_sets() -> Vec<common_rpc::MockDataSet> {
    vec![
        common_rpc::MockDataSet {
            data_set_id: 21,
            provider_id: 7,
            client_data_set_id: 9021,
            reserve: 5_000,
            leaves: 100,
        },
        common_rpc::MockDataSet {
            data_set_id: 22,
            provider_id: 9,
            client_data_set_id: 9022,
            reserve: 6_000,
            leaves: 200,
        },
    ]
}

async fn view_chain(legacy: bool) -> MockRpc {
    let mut spec = common_rpc::ChainSpec::new(vec![
        (7, "http://127.0.0.1:1/".into()),
        (9, "http://127.0.0.1:2/".into()),
    ]);
    spec.legacy_view = legacy;
    spec.data_sets = mock_sets();
    common_rpc::chain_with(spec).await
}

#[tokio::test]
async fn the_current_13_word_view_is_decoded_with_the_lifecycle_reserve() {
    let rpc = view_chain(false).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let sets = reader.client_data_sets(common_rpc::PAYER).await.unwrap();
    let got: Vec<_> = sets
        .iter()
        .map(|d| {
            (
                d.data_set_id.to::<u64>(),
                d.client_data_set_id.to::<u64>(),
                d.provider_id.to::<u64>(),
                d.lifecycle_reserve_balance,
                d.pending_one_time_payments,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (21, 9021, 7, Some(U256::from(5_000)), Some(U256::ZERO)),
            (22, 9022, 9, Some(U256::from(6_000)), Some(U256::ZERO)),
        ]
    );
    let chosen = reader
        .find_reusable_data_set(common_rpc::PAYER, U256::from(9), &cdn_metadata())
        .await
        .unwrap();
    assert_eq!(chosen.map(|d| d.data_set_id), Some(U256::from(22)));
}

#[tokio::test]
async fn the_old_11_word_view_still_reads_the_same_ids() {
    let rpc = view_chain(true).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let sets = reader.client_data_sets(common_rpc::PAYER).await.unwrap();
    let got: Vec<_> = sets
        .iter()
        .map(|d| {
            (
                d.data_set_id.to::<u64>(),
                d.client_data_set_id.to::<u64>(),
                d.provider_id.to::<u64>(),
                d.lifecycle_reserve_balance,
            )
        })
        .collect();
    assert_eq!(got, vec![(21, 9021, 7, None), (22, 9022, 9, None)]);
}

#[tokio::test]
async fn a_view_layout_of_another_width_fails_naming_contract_function_and_width() {
    let rpc = view_chain(false).await;
    // Two elements of 14 words: a future layout.
    let mut words = vec![U256::from(32), U256::from(2)];
    words.extend((0..28).map(|i| U256::from(i + 1)));
    let raw: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes::<32>()).collect();
    let view = common_rpc::VIEW;
    rpc.on_call_raw::<IFwssView::getClientDataSetsCall>(view, raw);
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let err = reader
        .client_data_sets(common_rpc::PAYER)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::UnknownLayout { width: 14, contract, .. } if contract == view),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("FWSSView.getClientDataSets"), "{text}");
    assert!(text.contains(&view.to_string()), "{text}");
    assert!(text.contains("14 words per element"), "{text}");
    // No data set was asked about: nothing was read from a misparsed id.
    assert_eq!(rpc.count("eth_call:getAllDataSetMetadata(uint256)"), 0);
}

#[tokio::test]
async fn the_price_list_is_read_from_the_view_or_falls_back_to_the_documented_one() {
    let rpc = view_chain(false).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let fees = reader.fee_schedule().await.unwrap();
    assert_eq!(fees.source, FeeSource::Chain);
    // The mock deployment's numbers (common_rpc::mock_prices), every one
    // unlike the documented list: each must come from the chain.
    let bp = common_rpc::usdfc_bp;
    let expected = FeeSchedule {
        create_data_set_fee: bp(300),
        add_pieces_base_fee: bp(6),
        add_pieces_per_piece_fee: bp(4),
        lifecycle_reserve_target: bp(1200),
        replenish_threshold: bp(60),
        cdn_lockup_amount: bp(6000),
        cache_miss_lockup_amount: bp(2500),
        storage_per_tib_per_month: common_rpc::usdfc(3),
        dataset_fee_per_month: bp(360),
        default_lockup_period: U256::from(57_600),
        source: FeeSource::Chain,
    };
    assert_eq!(fees, expected);
    let documented = FeeSchedule::documented();
    for (got, doc) in [
        (fees.create_data_set_fee, documented.create_data_set_fee),
        (fees.add_pieces_base_fee, documented.add_pieces_base_fee),
        (
            fees.add_pieces_per_piece_fee,
            documented.add_pieces_per_piece_fee,
        ),
        (
            fees.lifecycle_reserve_target,
            documented.lifecycle_reserve_target,
        ),
        (fees.replenish_threshold, documented.replenish_threshold),
        (fees.cdn_lockup_amount, documented.cdn_lockup_amount),
        (
            fees.cache_miss_lockup_amount,
            documented.cache_miss_lockup_amount,
        ),
        (
            fees.storage_per_tib_per_month,
            documented.storage_per_tib_per_month,
        ),
        (fees.dataset_fee_per_month, documented.dataset_fee_per_month),
        (fees.default_lockup_period, documented.default_lockup_period),
    ] {
        assert_ne!(got, doc, "the mock must not serve the documented figure");
    }
    let mut spec = common_rpc::ChainSpec::new(vec![(7, "http://127.0.0.1:1/".into())]);
    spec.price_list = false;
    let old = common_rpc::chain_with(spec).await;
    let reader = ChainReader::new(&old.url(), Network::Calibration).unwrap();
    let fees = reader.fee_schedule().await.unwrap();
    assert_eq!(fees.source, FeeSource::Documented);
    assert_eq!(fees, FeeSchedule::documented());
}

#[tokio::test]
async fn the_registry_lists_its_active_providers() {
    let rpc = view_chain(false).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    assert_eq!(
        reader.active_provider_ids().await.unwrap(),
        vec![U256::from(7), U256::from(9)]
    );
}

#[tokio::test]
async fn the_mock_chain_answers_per_account_and_per_data_set() {
    // Reads for the payer see its deposit, approval and sets; the same reads
    // for any other account or set see zeros, so code that asked about the
    // wrong account would see an empty wallet.
    let mut spec = common_rpc::ChainSpec::new(vec![(7, "http://127.0.0.1:1/".into())]);
    spec.data_sets = mock_sets();
    let rpc = common_rpc::chain_with(spec).await;
    let reader = ChainReader::new(&rpc.url(), Network::Calibration).unwrap();
    let payer = reader.wallet_report(common_rpc::PAYER).await.unwrap();
    assert!(payer.is_ready(), "{:?}", payer.problems());
    assert_eq!(payer.usdfc_balance, common_rpc::usdfc(20));
    assert!(payer.approval.is_approved);
    let stranger = address!("00000000000000000000000000000000000000aa");
    let other = reader.wallet_report(stranger).await.unwrap();
    assert_eq!(other.usdfc_balance, U256::ZERO);
    assert_eq!(other.account.funds, U256::ZERO);
    assert!(!other.approval.is_approved);
    assert_eq!(other.approval.lockup_allowance, U256::ZERO);
    assert!(reader.client_data_sets(stranger).await.unwrap().is_empty());
    let sets = reader.client_data_sets(common_rpc::PAYER).await.unwrap();
    assert_eq!(sets.len(), 2);
    // Leaf counts per set; an unknown set reverts as PDPVerifier does.
    assert_eq!(
        reader.data_set_leaf_count(U256::from(21)).await.unwrap(),
        U256::from(100)
    );
    assert_eq!(
        reader.data_set_leaf_count(U256::from(22)).await.unwrap(),
        U256::from(200)
    );
    let err = reader
        .data_set_leaf_count(U256::from(77))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DataSetNotLive"), "{err}");
}
