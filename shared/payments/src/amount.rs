//! Amounts: an order's US-cents price as the asset's base units (integers end to end), the
//! EIP-681 URI a wallet opens, and display strings.

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::chains::{Asset, AssetKind};

/// A native coin's price, locked into an intent when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// US cents for one whole coin.
    pub usd_cents_per_coin: u64,
    /// When the price source last updated it.
    pub at_ms: i64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("no price for this coin is available")]
    NoPrice,
    #[error("the newest price is {age_s} s old, more than the {max_s} s allowed")]
    StalePrice { age_s: i64, max_s: i64 },
    #[error("the amount does not fit")]
    Overflow,
}

fn pow10(n: u8) -> U256 {
    U256::from(10u8).pow(U256::from(n))
}

/// What `cents` costs in `asset`'s base units: dollar stablecoins 1:1, anything else at `quote`,
/// rounded up so the café is never short by a base unit. A quote older than `max_age_ms` is
/// refused rather than used.
pub fn amount_due(cents: u64, asset: &Asset, quote: Option<Quote>, now_ms: i64, max_age_ms: i64) -> Result<U256, AmountError> {
    if asset.usd_pegged {
        // decimals >= 2 is checked with the configuration.
        return U256::from(cents).checked_mul(pow10(asset.decimals.saturating_sub(2))).ok_or(AmountError::Overflow);
    }
    let quote = quote.filter(|q| q.usd_cents_per_coin > 0).ok_or(AmountError::NoPrice)?;
    let age = now_ms.saturating_sub(quote.at_ms);
    if age > max_age_ms {
        return Err(AmountError::StalePrice { age_s: age / 1000, max_s: max_age_ms / 1000 });
    }
    let numerator = U256::from(cents).checked_mul(pow10(asset.decimals)).ok_or(AmountError::Overflow)?;
    Ok(numerator.div_ceil(U256::from(quote.usd_cents_per_coin)))
}

/// `amount` base units as a decimal string in whole coins, without trailing zeros: `1.5`, `0.000125`.
pub fn format_units(amount: U256, decimals: u8) -> String {
    let unit = pow10(decimals);
    let (whole, frac) = (amount / unit, amount % unit);
    if frac.is_zero() {
        return whole.to_string();
    }
    let frac = format!("{:0>width$}", frac.to_string(), width = usize::from(decimals));
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// The EIP-681 URI a wallet opens to pay `amount` of `asset` to `deposit` on `chain_id`: a
/// value transfer for the native coin, the token's `transfer` call for an ERC-20.
pub fn payment_uri(chain_id: u64, asset: &Asset, deposit: Address, amount: U256) -> String {
    match asset.kind {
        AssetKind::Native => format!("ethereum:{}@{chain_id}?value={amount}", deposit.to_checksum(None)),
        AssetKind::Erc20(token) => {
            format!("ethereum:{}@{chain_id}/transfer?address={}&uint256={amount}", token.to_checksum(None), deposit.to_checksum(None))
        }
    }
}

/// `uri` as a QR code in SVG: medium error correction (a phone's camera reads it off a scuffed
/// screen), a quiet zone, dark on white whatever the page's colours, and a `viewBox` so it
/// scales to the space it is given.
pub fn payment_qr_svg(uri: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build();
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::address;

    use super::*;

    fn usdc(decimals: u8) -> Asset {
        Asset { kind: AssetKind::Erc20(address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359")), decimals, usd_pegged: true, price_feed: None }
    }
    const ETH: Asset = Asset { kind: AssetKind::Native, decimals: 18, usd_pegged: false, price_feed: None };

    #[test]
    fn stablecoins_are_one_to_one_in_their_own_decimals() {
        assert_eq!(amount_due(450, &usdc(6), None, 0, 0), Ok(U256::from(4_500_000u64)));
        assert_eq!(amount_due(450, &usdc(18), None, 0, 0), Ok(U256::from(4_500_000_000_000_000_000u128)));
    }

    #[test]
    fn native_coins_use_a_fresh_quote_and_round_up() {
        let quote = Quote { usd_cents_per_coin: 300_000, at_ms: 1_000 };
        // $4.50 at $3,000: 0.0015 ETH exactly.
        assert_eq!(amount_due(450, &ETH, Some(quote), 2_000, 60_000), Ok(U256::from(1_500_000_000_000_000u64)));
        // $1.00 at $3,000 is 1/3000 ETH: rounded up to the next wei.
        assert_eq!(amount_due(100, &ETH, Some(quote), 2_000, 60_000), Ok(U256::from(333_333_333_333_334u64)));
        assert_eq!(amount_due(100, &ETH, Some(quote), 100_000, 60_000), Err(AmountError::StalePrice { age_s: 99, max_s: 60 }));
        assert_eq!(amount_due(100, &ETH, None, 0, 60_000), Err(AmountError::NoPrice));
    }

    #[test]
    fn units_format_without_floats() {
        assert_eq!(format_units(U256::from(4_500_000u64), 6), "4.5");
        assert_eq!(format_units(U256::from(125u64), 6), "0.000125");
        assert_eq!(format_units(U256::from(7_000_000u64), 6), "7");
        assert_eq!(format_units(U256::ZERO, 18), "0");
    }

    #[test]
    fn payment_uris_follow_eip_681() {
        let deposit = address!("0x00000000000000000000000000000000000000aa");
        assert_eq!(
            payment_uri(137, &usdc(6), deposit, U256::from(4_500_000u64)),
            "ethereum:0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359@137/transfer?address=0x00000000000000000000000000000000000000AA&uint256=4500000"
        );
        assert_eq!(payment_uri(1, &ETH, deposit, U256::from(15u64)), "ethereum:0x00000000000000000000000000000000000000AA@1?value=15");
    }

    #[test]
    fn the_largest_payment_uri_fits_a_qr_code_that_scales() {
        // The longest URI a token payment makes: 18 decimals and the largest amount.
        let uri = payment_uri(u64::MAX, &usdc(18), address!("0x00000000000000000000000000000000000000aa"), U256::MAX);
        let svg = payment_qr_svg(&uri).expect("fits");
        assert!(svg.contains("viewBox=\"0 0 ") && svg.contains(r##"fill="#000000""##) && svg.contains(r##"fill="#ffffff""##), "{svg}");
        assert_eq!(svg, payment_qr_svg(&uri).expect("fits"), "the same URI, the same code");
        assert_ne!(svg, payment_qr_svg(&uri.replace("@", "@1")).expect("fits"));
        // The reading back is the end-to-end test's (tests/e2e/crypto.mjs, with jsQR).
    }
}
