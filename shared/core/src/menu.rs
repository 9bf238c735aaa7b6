//! The menu: items with sizes, modifiers and prices in cents, and the seeded default menu.

use serde::{Deserialize, Serialize};

use crate::{Cents, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Drink,
    Food,
}

/// One size an item comes in, with its base price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizePrice {
    pub size: String,
    pub price_cents: Cents,
}

/// A modifier a customer may add to an item (an extra shot, a milk choice). Modifiers that share
/// a `group` are alternatives: a line may pick at most one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifierOption {
    pub id: String,
    pub name: String,
    pub price_cents: Cents,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItem {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    pub sizes: Vec<SizePrice>,
    pub modifiers: Vec<ModifierOption>,
    pub available: bool,
    /// The object key of the item's picture (`menu/<id>/<ulid>.<ext>`), set when a manager asks
    /// to upload one. Clients see a download URL in its place, never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How long one takes to make, for the kitchen's estimates; unset, the category's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prep_seconds: Option<u32>,
    /// Dietary and allergen labels (`vegan`, `gluten-free`, `contains-milk`, ...): what search
    /// filters on and the customer-service agent answers allergen questions from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Bumped by every change, so a write can require the version it read (an item stored
    /// before versions existed reads as 0).
    #[serde(default)]
    pub version: u64,
}

/// The most dietary and allergen tags an item may have.
pub const MAX_TAGS: usize = 16;

/// The longest preparation time an item may have.
pub const MAX_PREP_SECONDS: u32 = 3600;

impl MenuItem {
    /// How long one of it takes to make, in milliseconds: its own time, else 90 s for a drink
    /// and 30 s for food.
    pub fn prep_ms(&self) -> i64 {
        let default = match self.category {
            Category::Drink => 90,
            Category::Food => 30,
        };
        i64::from(self.prep_seconds.unwrap_or(default)) * 1000
    }

    pub fn size(&self, size: &str) -> Option<&SizePrice> {
        self.sizes.iter().find(|s| s.size == size)
    }

    pub fn modifier(&self, id: &str) -> Option<&ModifierOption> {
        self.modifiers.iter().find(|m| m.id == id)
    }
}

/// The whole menu, as the pricing rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Menu {
    pub items: Vec<MenuItem>,
}

impl Menu {
    pub fn item(&self, id: &str) -> Option<&MenuItem> {
        self.items.iter().find(|i| i.id == id)
    }
}

pub const MAX_PRICE: Cents = Cents(100_000);
const MAX_SIZES: usize = 6;
const MAX_MODIFIERS: usize = 30;

/// A manager's request to add an item, as it arrives; [`NewMenuItem::parse`] makes a [`MenuItem`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMenuItem {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: Category,
    pub sizes: Vec<SizePrice>,
    #[serde(default)]
    pub modifiers: Vec<ModifierOption>,
    #[serde(default = "yes")]
    pub available: bool,
    #[serde(default)]
    pub prep_seconds: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn yes() -> bool {
    true
}

impl NewMenuItem {
    pub fn parse(self) -> Result<MenuItem, DomainError> {
        let id = match self.id {
            Some(id) => id,
            None => slug(&self.name),
        };
        let item = MenuItem {
            id,
            name: self.name.trim().to_owned(),
            description: self.description.trim().to_owned(),
            category: self.category,
            sizes: self.sizes,
            modifiers: self.modifiers,
            available: self.available,
            image: None,
            prep_seconds: self.prep_seconds,
            tags: self.tags,
            version: 1,
        };
        validate_item(&item)?;
        Ok(item)
    }
}

/// A partial update of an item. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuItemPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    pub sizes: Option<Vec<SizePrice>>,
    pub modifiers: Option<Vec<ModifierOption>>,
    pub available: Option<bool>,
    pub prep_seconds: Option<u32>,
    pub tags: Option<Vec<String>>,
}

impl MenuItemPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.category.is_none()
            && self.sizes.is_none()
            && self.modifiers.is_none()
            && self.available.is_none()
            && self.prep_seconds.is_none()
            && self.tags.is_none()
    }

    /// Applies the patch to a copy of `item` and checks the result.
    pub fn apply(self, item: &MenuItem) -> Result<MenuItem, DomainError> {
        if self.is_empty() {
            return Err(DomainError::validation("empty_patch", "the patch changes nothing"));
        }
        let mut next = item.clone();
        if let Some(name) = self.name {
            next.name = name.trim().to_owned();
        }
        if let Some(description) = self.description {
            next.description = description.trim().to_owned();
        }
        if let Some(category) = self.category {
            next.category = category;
        }
        if let Some(sizes) = self.sizes {
            next.sizes = sizes;
        }
        if let Some(modifiers) = self.modifiers {
            next.modifiers = modifiers;
        }
        if let Some(available) = self.available {
            next.available = available;
        }
        if let Some(prep) = self.prep_seconds {
            next.prep_seconds = Some(prep);
        }
        if let Some(tags) = self.tags {
            next.tags = tags;
        }
        validate_item(&next)?;
        Ok(next)
    }
}

/// The largest picture a manager may upload, in bytes. Under the 1 MiB request-body limit
/// of the Spin shell, which keeps the bytes itself; on S3 the presigned URL signs the length.
pub const MAX_IMAGE_BYTES: u64 = 1_000_000;

/// The picture formats a menu item may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 3] = [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp];

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }

    pub fn from_content_type(content_type: &str) -> Option<ImageFormat> {
        Self::ALL.into_iter().find(|f| f.content_type().eq_ignore_ascii_case(content_type.trim()))
    }

    pub fn from_extension(extension: &str) -> Option<ImageFormat> {
        Self::ALL.into_iter().find(|f| f.extension() == extension)
    }
}

/// A manager's request for an upload URL: what will be uploaded, so the URL can allow exactly that.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageUploadRequest {
    pub content_type: String,
    pub content_length: u64,
}

impl ImageUploadRequest {
    pub fn parse(&self) -> Result<(ImageFormat, u64), DomainError> {
        let format = ImageFormat::from_content_type(&self.content_type)
            .ok_or_else(|| DomainError::validation("unsupported_image_type", "content_type must be image/jpeg, image/png or image/webp"))?;
        if !(1..=MAX_IMAGE_BYTES).contains(&self.content_length) {
            return Err(DomainError::validation("invalid_image_size", format!("content_length must be 1 to {MAX_IMAGE_BYTES} bytes")));
        }
        Ok((format, self.content_length))
    }
}

/// The object key of a new picture for `item_id`: unique per upload, so a replaced picture
/// never serves stale bytes from a cache.
pub fn image_key(item_id: &str, unique: &str, format: ImageFormat) -> String {
    format!("menu/{item_id}/{unique}.{}", format.extension())
}

fn is_slug(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-') && !s.ends_with('-')
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

fn validate_item(item: &MenuItem) -> Result<(), DomainError> {
    let bad = |code, msg: String| Err(DomainError::validation(code, msg));
    if !is_slug(&item.id) {
        return bad("invalid_item_id", "item id must be 1-64 lowercase letters, digits or dashes".into());
    }
    let name_len = item.name.chars().count();
    if !(1..=80).contains(&name_len) {
        return bad("invalid_name", "name must be 1 to 80 characters".into());
    }
    if item.description.chars().count() > 500 {
        return bad("invalid_description", "description must be at most 500 characters".into());
    }
    if item.prep_seconds.is_some_and(|s| !(1..=MAX_PREP_SECONDS).contains(&s)) {
        return bad("invalid_prep_seconds", format!("prep_seconds must be 1 to {MAX_PREP_SECONDS}"));
    }
    if item.sizes.is_empty() || item.sizes.len() > MAX_SIZES {
        return bad("invalid_sizes", format!("an item needs 1 to {MAX_SIZES} sizes"));
    }
    for (i, s) in item.sizes.iter().enumerate() {
        if !is_slug(&s.size) {
            return bad("invalid_sizes", format!("size `{}` must be a lowercase word", s.size));
        }
        if item.sizes[..i].iter().any(|o| o.size == s.size) {
            return bad("invalid_sizes", format!("size `{}` is listed twice", s.size));
        }
        if s.price_cents > MAX_PRICE {
            return bad("invalid_price", format!("price must be at most {MAX_PRICE}"));
        }
    }
    if item.tags.len() > MAX_TAGS {
        return bad("invalid_tags", format!("an item takes at most {MAX_TAGS} tags"));
    }
    for (i, t) in item.tags.iter().enumerate() {
        if !is_slug(t) || t.len() > 32 {
            return bad("invalid_tags", format!("tag `{t}` must be a lowercase word of at most 32 letters, digits or dashes"));
        }
        if item.tags[..i].contains(t) {
            return bad("invalid_tags", format!("tag `{t}` is listed twice"));
        }
    }
    if item.modifiers.len() > MAX_MODIFIERS {
        return bad("invalid_modifiers", format!("an item takes at most {MAX_MODIFIERS} modifiers"));
    }
    for (i, m) in item.modifiers.iter().enumerate() {
        if !is_slug(&m.id) || m.name.trim().is_empty() || m.name.chars().count() > 80 {
            return bad("invalid_modifiers", format!("modifier `{}` needs a slug id and a name", m.id));
        }
        if item.modifiers[..i].iter().any(|o| o.id == m.id) {
            return bad("invalid_modifiers", format!("modifier `{}` is listed twice", m.id));
        }
        if m.price_cents > MAX_PRICE {
            return bad("invalid_price", format!("price must be at most {MAX_PRICE}"));
        }
    }
    Ok(())
}

fn sizes(prices: &[(&str, u64)]) -> Vec<SizePrice> {
    prices.iter().map(|&(size, c)| SizePrice { size: size.into(), price_cents: Cents(c) }).collect()
}

fn modifier(id: &str, name: &str, cents: u64, group: Option<&str>) -> ModifierOption {
    ModifierOption { id: id.into(), name: name.into(), price_cents: Cents(cents), group: group.map(Into::into) }
}

fn espresso_modifiers(milk: bool) -> Vec<ModifierOption> {
    let mut m = vec![
        modifier("extra-shot", "Extra shot", 90, None),
        modifier("decaf", "Decaf", 0, None),
        modifier("vanilla-syrup", "Vanilla syrup", 60, None),
        modifier("caramel-syrup", "Caramel syrup", 60, None),
    ];
    if milk {
        m.extend([
            modifier("whole-milk", "Whole milk", 0, Some("milk")),
            modifier("skim-milk", "Skim milk", 0, Some("milk")),
            modifier("oat-milk", "Oat milk", 70, Some("milk")),
            modifier("almond-milk", "Almond milk", 70, Some("milk")),
            modifier("soy-milk", "Soy milk", 60, Some("milk")),
        ]);
    }
    m
}

/// `item` with its dietary and allergen tags.
fn tagged(mut item: MenuItem, tags: &str) -> MenuItem {
    item.tags = tags.split_whitespace().map(str::to_owned).collect();
    item
}

fn item(id: &str, name: &str, description: &str, category: Category, sizes: Vec<SizePrice>, modifiers: Vec<ModifierOption>) -> MenuItem {
    MenuItem {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        category,
        sizes,
        modifiers,
        available: true,
        image: None,
        prep_seconds: None,
        tags: Vec::new(),
        version: 0,
    }
}

/// The menu a new shop starts with.
pub fn default_menu() -> Vec<MenuItem> {
    use Category::{Drink, Food};
    let cup = |s, m, l| sizes(&[("small", s), ("medium", m), ("large", l)]);
    let items = vec![
        item("espresso", "Espresso", "A double shot of our house blend.", Drink, sizes(&[("single", 250), ("double", 320)]), espresso_modifiers(false)),
        item("americano", "Americano", "Espresso lengthened with hot water.", Drink, cup(320, 370, 420), espresso_modifiers(true)),
        item("cappuccino", "Cappuccino", "Espresso, steamed milk and a thick cap of foam.", Drink, cup(380, 430, 480), espresso_modifiers(true)),
        item("latte", "Caffè Latte", "Espresso with silky steamed milk.", Drink, cup(400, 450, 500), espresso_modifiers(true)),
        item("flat-white", "Flat White", "Ristretto shots with velvety microfoam.", Drink, sizes(&[("small", 420), ("medium", 470)]), espresso_modifiers(true)),
        item("mocha", "Caffè Mocha", "Espresso, chocolate and steamed milk, topped with cream.", Drink, cup(450, 500, 550), espresso_modifiers(true)),
        item("macchiato", "Macchiato", "Espresso marked with a spoon of foam.", Drink, sizes(&[("single", 300), ("double", 360)]), espresso_modifiers(false)),
        item("cortado", "Cortado", "Equal parts espresso and warm milk.", Drink, sizes(&[("regular", 390)]), espresso_modifiers(true)),
        item("cold-brew", "Cold Brew", "Steeped for 18 hours, served over ice.", Drink, cup(400, 450, 500), espresso_modifiers(true)),
        item(
            "chai-latte",
            "Chai Latte",
            "Spiced black tea with steamed milk.",
            Drink,
            cup(400, 450, 500),
            espresso_modifiers(true).into_iter().filter(|m| m.id != "extra-shot" && m.id != "decaf").collect(),
        ),
        item(
            "matcha-latte",
            "Matcha Latte",
            "Stone-ground green tea with steamed milk.",
            Drink,
            cup(450, 500, 550),
            espresso_modifiers(true).into_iter().filter(|m| m.id != "extra-shot" && m.id != "decaf").collect(),
        ),
        item(
            "hot-chocolate",
            "Hot Chocolate",
            "Dark chocolate melted into steamed milk.",
            Drink,
            cup(350, 400, 450),
            vec![modifier("whipped-cream", "Whipped cream", 50, None), modifier("oat-milk", "Oat milk", 70, Some("milk"))],
        ),
        item("croissant", "Butter Croissant", "Flaky, baked every morning.", Food, sizes(&[("regular", 325)]), vec![modifier("warmed", "Warmed", 0, None)]),
        item(
            "blueberry-muffin",
            "Blueberry Muffin",
            "Loaded with wild blueberries.",
            Food,
            sizes(&[("regular", 350)]),
            vec![modifier("warmed", "Warmed", 0, None)],
        ),
        item(
            "avocado-toast",
            "Avocado Toast",
            "Sourdough, smashed avocado, chilli flakes.",
            Food,
            sizes(&[("regular", 850)]),
            vec![modifier("add-egg", "Poached egg", 150, None)],
        ),
        item(
            "banana-bread",
            "Banana Bread",
            "A thick slice with walnuts, lightly toasted.",
            Food,
            sizes(&[("regular", 375)]),
            vec![modifier("butter", "Salted butter", 50, None)],
        ),
    ];
    items
        .into_iter()
        .map(|i| {
            let tags = default_tags(&i.id);
            tagged(i, tags)
        })
        .collect()
}

/// The dietary and allergen tags of the default menu's items.
fn default_tags(id: &str) -> &'static str {
    match id {
        "espresso" => "vegan dairy-free gluten-free hot",
        "americano" => "vegan dairy-free gluten-free hot",
        "cold-brew" => "vegan dairy-free gluten-free iced",
        "macchiato" => "vegetarian gluten-free contains-milk hot",
        "mocha" => "vegetarian gluten-free contains-milk hot",
        "hot-chocolate" => "vegetarian gluten-free contains-milk caffeine-free hot",
        "croissant" => "vegetarian contains-gluten contains-milk contains-egg",
        "blueberry-muffin" => "vegetarian contains-gluten contains-milk contains-egg",
        "avocado-toast" => "vegan dairy-free contains-gluten",
        "banana-bread" => "vegetarian contains-gluten contains-egg contains-nuts",
        "cappuccino" => "vegetarian gluten-free contains-milk vegan-option hot",
        "latte" => "vegetarian gluten-free contains-milk vegan-option hot",
        "flat-white" => "vegetarian gluten-free contains-milk vegan-option hot",
        "cortado" => "vegetarian gluten-free contains-milk vegan-option hot",
        "chai-latte" => "vegetarian gluten-free contains-milk vegan-option hot",
        "matcha-latte" => "vegetarian gluten-free contains-milk vegan-option hot",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_menu_is_valid_and_has_unique_ids() {
        let menu = default_menu();
        assert!(menu.len() >= 15);
        for (i, item) in menu.iter().enumerate() {
            validate_item(item).unwrap_or_else(|e| panic!("{}: {e}", item.id));
            assert!(menu[..i].iter().all(|o| o.id != item.id), "duplicate {}", item.id);
        }
    }

    fn new_item(json: &str) -> Result<MenuItem, DomainError> {
        serde_json::from_str::<NewMenuItem>(json).expect("well-formed").parse()
    }

    #[test]
    fn a_new_item_gets_a_slug_from_its_name() {
        let item = new_item(r#"{"name":"Iced Oat Latte!","category":"drink","sizes":[{"size":"medium","price_cents":500}]}"#).expect("valid");
        assert_eq!(item.id, "iced-oat-latte");
        assert!(item.available);
    }

    #[test]
    fn new_items_breaking_the_rules_are_rejected_with_a_code() {
        let cases = [
            (r#"{"name":"","category":"food","sizes":[{"size":"regular","price_cents":1}]}"#, "invalid_item_id"),
            (r#"{"id":"x","name":"X","category":"food","sizes":[]}"#, "invalid_sizes"),
            (r#"{"id":"x","name":"X","category":"food","sizes":[{"size":"regular","price_cents":1},{"size":"regular","price_cents":2}]}"#, "invalid_sizes"),
            (r#"{"id":"x","name":"X","category":"food","sizes":[{"size":"regular","price_cents":100001}]}"#, "invalid_price"),
            (r#"{"id":"Bad Id","name":"X","category":"food","sizes":[{"size":"regular","price_cents":1}]}"#, "invalid_item_id"),
        ];
        for (json, code) in cases {
            assert_eq!(new_item(json).map_err(|e| e.code()), Err(code), "{json}");
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let latte = default_menu().into_iter().find(|i| i.id == "latte").expect("latte");
        let patch: MenuItemPatch = serde_json::from_str(r#"{"available":false}"#).expect("patch");
        let next = patch.apply(&latte).expect("valid");
        assert!(!next.available);
        assert_eq!(next.sizes, latte.sizes);
        assert_eq!(MenuItemPatch::default().apply(&latte).map_err(|e| e.code()), Err("empty_patch"));
    }
}
