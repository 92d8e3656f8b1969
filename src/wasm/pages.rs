//! A page store implemented in JavaScript ([`crate::pages::PageStore`]):
//! an object with synchronous `get(table, key)`, `put(table, key, text)` and
//! `delete(table, key)`, and optionally `keys(table)` (an array of the
//! table's keys, or null; the Worker's is Durable Object SQLite,
//! `js/stores.js`). Conversion only.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{js_error, to_json, WasmRestoring, WasmRoom};
use crate::pages::RestoreRows;
use crate::pages::{PageError, PageStore, Table};
use crate::placement::Restoring;
use crate::Room;

/// The JS object's methods, bound to it.
pub(crate) struct JsPageStore {
    this: JsValue,
    get: js_sys::Function,
    put: js_sys::Function,
    delete: js_sys::Function,
    keys: Option<js_sys::Function>,
}

fn method(obj: &JsValue, name: &str) -> Result<js_sys::Function, JsError> {
    js_sys::Reflect::get(obj, &JsValue::from_str(name))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| js_error(format!("pages: not a page store (no {name}(table, key) method)")))
}

impl JsPageStore {
    pub(crate) fn new(obj: JsValue) -> Result<Self, JsError> {
        if !obj.is_object() {
            return Err(js_error("pages: expected an object {get, put, delete}"));
        }
        Ok(Self {
            get: method(&obj, "get")?,
            put: method(&obj, "put")?,
            delete: method(&obj, "delete")?,
            keys: method(&obj, "keys").ok(),
            this: obj,
        })
    }
}

/// A JS exception as a typed backend error (its message, or its text).
fn thrown(op: &str, e: JsValue) -> PageError {
    let msg = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "an exception".into());
    PageError::Backend(format!("{op}: {msg}"))
}

/// Grows the wasm memory once for a room about to be read back from its
/// image (1.75 times the image: 49.9 MiB for the 150k room's 29.2 MB of
/// format 5, whose read-back peaks at 47.0 MiB without this) instead of
/// 64 KiB at a time as its tables fill: in V8 each of those grows costs a
/// commit and a GC nudge (in Node 100-123 ms to read that room back without
/// this, 88-103 ms with it; 80 ms of a format-3 read-back).
/// The allocator keeps the freed block and hands it out again; a memory that
/// cannot grow that far is left as it is.
fn grow_memory_for(store: &JsPageStore) {
    if let Ok(Some(info)) = crate::image::info(store) {
        let want = usize::try_from(info.bytes.saturating_mul(7) / 4).unwrap_or(usize::MAX).min(1 << 30);
        let _ = Vec::<u8>::new().try_reserve_exact(want);
    }
}

impl PageStore for JsPageStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        let v = self.get.call2(&self.this, &table.name().into(), &key.into()).map_err(|e| thrown("get", e))?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        if let Some(s) = v.as_string() {
            return Ok(Some(s.into_bytes()));
        }
        if let Some(bytes) = v.dyn_ref::<js_sys::Uint8Array>() {
            return Ok(Some(bytes.to_vec()));
        }
        Err(PageError::Backend("get returned neither a string, a Uint8Array, null nor undefined".into()))
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        // PDU rows (JSON) and rows of IDs are text; image parts, packed
        // blocks and the ID index's buckets are bytes.
        let value: JsValue = match table {
            Table::Pdu | Table::Ids => {
                std::str::from_utf8(value).map_err(|_| PageError::Corrupt { table, key: key.into() })?.into()
            }
            Table::Image | Table::Blocks | Table::IdBuckets | Table::StatePools => {
                js_sys::Uint8Array::from(value).into()
            }
        };
        self.put.call3(&self.this, &table.name().into(), &key.into(), &value).map_err(|e| thrown("put", e))?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.delete.call2(&self.this, &table.name().into(), &key.into()).map_err(|e| thrown("delete", e))?;
        Ok(())
    }

    fn keys(&self, table: Table) -> Result<Option<Vec<String>>, PageError> {
        let Some(keys) = &self.keys else { return Ok(None) };
        let v = keys.call1(&self.this, &table.name().into()).map_err(|e| thrown("keys", e))?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        let bad = || PageError::Backend("keys returned neither an array of strings nor null".into());
        let list = v.dyn_into::<js_sys::Array>().map_err(|_| bad())?;
        list.iter().map(|k| k.as_string().ok_or_else(bad)).collect::<Result<Vec<_>, _>>().map(Some)
    }
}

#[wasm_bindgen(js_class = Room)]
impl WasmRoom {
    /// Keeps the room's PDU texts in `pages` (an object with synchronous
    /// `get(table, key)`, `put(table, key, value)` and `delete(table, key)`;
    /// values are text, or a `Uint8Array` for the `image`, `blocks`,
    /// `id_buckets` and `state_pools` tables)
    /// behind a cache of `cacheBytes`, instead of in wasm memory. Only on a
    /// room with no events yet.
    #[wasm_bindgen(js_name = setPages)]
    pub fn set_pages(&mut self, pages: JsValue, cache_bytes: f64) -> Result<(), JsError> {
        if !(cache_bytes.is_finite() && cache_bytes >= 0.0) {
            return Err(js_error("cacheBytes: expected a number of bytes ≥ 0"));
        }
        let store = JsPageStore::new(pages)?;
        self.room.set_pages(Box::new(store), cache_bytes as usize).map_err(js_error)
    }

    /// The page cache's counters (`{bytes, capacity, rows, hits, misses}`),
    /// or `null` when the PDU texts are held in memory.
    #[wasm_bindgen(js_name = pageStats)]
    pub fn page_stats(&self) -> String {
        to_json(&match self.room.page_stats() {
            None => serde_json::Value::Null,
            Some(s) => {
                serde_json::json!({"bytes": s.bytes, "capacity": s.capacity, "rows": s.rows, "hits": s.hits, "misses": s.misses})
            }
        })
    }
}

#[wasm_bindgen(js_class = Room)]
impl WasmRoom {
    /// The image `pages` holds (`{format, generation, parts, bytes,
    /// logLength, events, roomVersion}` as JSON), or `null`.
    #[wasm_bindgen(js_name = imageInfo)]
    pub fn image_info(pages: JsValue) -> Result<String, JsError> {
        let store = JsPageStore::new(pages)?;
        let info = crate::image::info(&store).map_err(js_error)?;
        Ok(serde_json::to_string(&info).expect("image info serialises"))
    }

    /// Reads the room back from the image in `pages` (its PDUs stay there,
    /// behind a cache of `cacheBytes`). Throws when there is none or it
    /// cannot be read (the host then replays its log).
    #[wasm_bindgen(js_name = openImage)]
    pub fn open_image(pages: JsValue, cache_bytes: f64) -> Result<WasmRoom, JsError> {
        if !(cache_bytes.is_finite() && cache_bytes >= 0.0) {
            return Err(js_error("cacheBytes: expected a number of bytes ≥ 0"));
        }
        let store = JsPageStore::new(pages)?;
        grow_memory_for(&store);
        match Room::open_image(Box::new(store), cache_bytes as usize).map_err(js_error)? {
            Some((room, _)) => Ok(WasmRoom { room, checkpoint: None }),
            None => Err(js_error("the page store holds no image")),
        }
    }

    /// Writes the room as an image into its page store, taken at the host's
    /// log position `logLength`; returns its info as JSON (see `imageInfo`).
    #[wasm_bindgen(js_name = saveImage)]
    pub fn save_image(&mut self, log_length: f64) -> Result<String, JsError> {
        if !(log_length.is_finite() && log_length >= 0.0 && log_length.fract() == 0.0) {
            return Err(js_error("logLength: expected a whole number ≥ 0"));
        }
        let info = self.room.save_image(log_length as u64).map_err(js_error)?;
        Ok(serde_json::to_string(&info).expect("image info serialises"))
    }

    /// Goes on from this room (read back from its image) as a restore fed
    /// in parts: `push` the records written after the image, then `finish`.
    /// With `trustRows`, the page store holds those records' rows already.
    #[wasm_bindgen(js_name = restoreResume)]
    pub fn restore_resume(self, trust_rows: Option<bool>) -> WasmRestoring {
        let rows = if trust_rows.unwrap_or(false) { RestoreRows::Trust } else { RestoreRows::Write };
        WasmRestoring { inner: Some(Restoring::resume(self.room, rows)) }
    }
}
