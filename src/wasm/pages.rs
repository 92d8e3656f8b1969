//! A page store implemented in JavaScript ([`crate::pages::PageStore`]):
//! an object with synchronous `get(table, key)`, `put(table, key, text)` and
//! `delete(table, key)` (the Worker's is Durable Object SQLite,
//! `js/stores.js`). Conversion only.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{js_error, to_json, WasmRoom};
use crate::pages::{PageError, PageStore, Table};

/// The JS object's three methods, bound to it.
pub(crate) struct JsPageStore {
    this: JsValue,
    get: js_sys::Function,
    put: js_sys::Function,
    delete: js_sys::Function,
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
        Ok(Self { get: method(&obj, "get")?, put: method(&obj, "put")?, delete: method(&obj, "delete")?, this: obj })
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
        // The engine's rows are text (PDU JSON).
        let text = std::str::from_utf8(value).map_err(|_| PageError::Corrupt { table, key: key.into() })?;
        self.put.call3(&self.this, &table.name().into(), &key.into(), &text.into()).map_err(|e| thrown("put", e))?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.delete.call2(&self.this, &table.name().into(), &key.into()).map_err(|e| thrown("delete", e))?;
        Ok(())
    }
}

#[wasm_bindgen(js_class = Room)]
impl WasmRoom {
    /// Keeps the room's PDU texts in `pages` (an object with synchronous
    /// `get(table, key)`, `put(table, key, text)` and `delete(table, key)`)
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
