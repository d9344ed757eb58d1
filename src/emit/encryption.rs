//! Parquet modular encryption of outputs, with keys kept apart.
//!
//! Envelope encryption as Parquet's key tools do it: every file gets fresh random data keys
//! (one for the footer, one per encrypted column, AES-GCM through the Parquet writer), and each
//! data key is wrapped by a **master key** named by id in `[output.encryption]`. The wrapped
//! key is stored in the file as Parquet's key material (`PKMT1` JSON, internal storage, single
//! wrapping), the format pyarrow's `CryptoFactory` and Spark's key tools read; a reader only
//! needs a KMS client that unwraps with the master key. Ours wraps with AES-256-GCM under
//! HMAC-SHA256(master key, `privprep-master-key-v1`), as `base64(nonce ‖ ciphertext ‖ tag)`
//! with the master key's id as associated data: `scripts/privprep_kms.py` is that client for
//! pyarrow, in a few lines.
//!
//! The footer stays plaintext (signed with the footer key), so anyone can see what the file is
//! (schema, privprep's lineage footer, key ids) while the encrypted columns' values, and their
//! statistics, are not readable without the keys. Master keys come from
//! `PRIVPREP_MASTER_KEY_<ID>` or key files (`crate::identity::keys::resolve_master_key`), never
//! from the pipeline file and never the token key. Lineage holds their ids and fingerprints.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::encryption::encrypt::FileEncryptionProperties;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub use crate::lineage::record::{EncryptionRecord, KeyRef};
use privprep_kernels::key::Key;

/// Label of the wrapping key derived from a master key.
pub const WRAP_LABEL: &[u8] = b"privprep-master-key-v1";
/// Length of a data key: AES-128, as Parquet's key tools use by default.
const DATA_KEY_BYTES: usize = 16;

/// What an output's writer needs to encrypt it.
#[derive(Debug, Clone)]
pub struct Encryption {
    pub record: EncryptionRecord,
    pub keys: MasterKeys,
}

/// The master keys a run or a reader holds, by id.
#[derive(Clone, Default)]
pub struct MasterKeys {
    keys: BTreeMap<String, Arc<Key>>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key `{id}` is not available\n  = hint: set {env} or put the key in {file}")]
    Missing {
        id: String,
        env: String,
        file: String,
    },
    #[error("master key `{id}` (fingerprint {fingerprint}) does not unwrap this file's data key: it is not the key the file was written with\n  = hint: use the master key whose fingerprint the file's lineage lists (`privprep inspect FILE`)")]
    WrongKey { id: String, fingerprint: String },
    #[error("the file's key metadata is not Parquet key material: {0}")]
    Material(String),
    #[error("the system's random generator failed")]
    Random,
}

impl MasterKeys {
    pub fn new() -> MasterKeys {
        MasterKeys::default()
    }

    pub fn insert(&mut self, id: &str, key: Key) {
        self.keys.insert(id.to_string(), Arc::new(key));
    }

    /// [`MasterKeys::insert`] of a key held elsewhere too.
    pub fn insert_shared(&mut self, id: &str, key: Arc<Key>) {
        self.keys.insert(id.to_string(), key);
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Key>> {
        self.keys.get(id)
    }

    /// Id and fingerprint of master key `id`, when held.
    pub fn key_ref(&self, id: &str) -> Option<KeyRef> {
        self.keys.get(id).map(|k| KeyRef {
            id: id.to_string(),
            fingerprint: k.id(),
        })
    }

    /// A reader of the Parquet file at `path` that decrypts it with the keys held here.
    pub fn reader(
        &self,
        path: &std::path::Path,
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<std::fs::File>, String>
    {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let options =
            ArrowReaderOptions::default().with_file_decryption_properties(self.decryption());
        ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
            .map_err(|e| e.to_string())
    }

    /// Properties that decrypt any file whose master keys are held here.
    pub fn decryption(&self) -> Arc<FileDecryptionProperties> {
        FileDecryptionProperties::with_key_retriever(Arc::new(Unwrapper(self.clone())))
            .build()
            .expect("a key retriever needs nothing else")
    }
}

fn wrapping_key(master: &Key) -> LessSafeKey {
    let bytes = master.derive(WRAP_LABEL);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte AES-256 key"))
}

/// `data_key` wrapped under master key `id`: base64(nonce ‖ ciphertext ‖ tag).
pub fn wrap(master: &Key, id: &str, data_key: &[u8]) -> Result<String, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut sealed = data_key.to_vec();
    wrapping_key(master)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CryptoError::Random)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

/// The data key in `wrapped`, unwrapped with master key `id`.
pub fn unwrap(master: &Key, id: &str, wrapped: &str) -> Result<Vec<u8>, CryptoError> {
    let wrong = || CryptoError::WrongKey {
        id: id.to_string(),
        fingerprint: master.id(),
    };
    let raw = STANDARD
        .decode(wrapped.trim())
        .map_err(|e| CryptoError::Material(format!("wrappedDEK is not base64: {e}")))?;
    if raw.len() < NONCE_LEN {
        return Err(CryptoError::Material("wrappedDEK is too short".into()));
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut buf = sealed.to_vec();
    let plain = wrapping_key(master)
        .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buf)
        .map_err(|_| wrong())?;
    Ok(plain.to_vec())
}

/// Parquet key material (`PKMT1`, stored in the file) for a data key wrapped by `master_id`.
pub fn key_material(is_footer: bool, master_id: &str, wrapped: &str) -> String {
    let mut m = serde_json::Map::new();
    m.insert("keyMaterialType".into(), "PKMT1".into());
    m.insert("internalStorage".into(), true.into());
    m.insert("isFooterKey".into(), is_footer.into());
    if is_footer {
        m.insert("kmsInstanceID".into(), "DEFAULT".into());
        m.insert("kmsInstanceURL".into(), "DEFAULT".into());
    }
    m.insert("masterKeyID".into(), master_id.into());
    m.insert("wrappedDEK".into(), wrapped.into());
    m.insert("doubleWrapping".into(), false.into());
    serde_json::Value::Object(m).to_string()
}

/// (master key id, wrapped data key) of key material.
pub fn parse_key_material(bytes: &[u8]) -> Result<(String, String), CryptoError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CryptoError::Material(e.to_string()))?;
    if v["keyMaterialType"] != "PKMT1" {
        return Err(CryptoError::Material("keyMaterialType is not PKMT1".into()));
    }
    if v["doubleWrapping"] == true {
        return Err(CryptoError::Material(
            "double wrapping is not supported; write with double_wrapping = False".into(),
        ));
    }
    let field = |name: &str| {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CryptoError::Material(format!("{name} is missing")))
    };
    Ok((field("masterKeyID")?, field("wrappedDEK")?))
}

fn data_key() -> Result<Vec<u8>, CryptoError> {
    let mut k = vec![0u8; DATA_KEY_BYTES];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| CryptoError::Random)?;
    Ok(k)
}

/// Fresh encryption properties for one file: new data keys for the footer and for each of
/// `record.columns`, wrapped under the master keys the record names.
pub fn file_encryption(
    record: &EncryptionRecord,
    keys: &MasterKeys,
) -> Result<Arc<FileEncryptionProperties>, CryptoError> {
    let master = |r: &KeyRef| {
        keys.get(&r.id)
            .cloned()
            .ok_or_else(|| CryptoError::Missing {
                id: r.id.clone(),
                env: crate::identity::keys::master_key_env(&r.id),
                file: format!("<state dir>/keys/master/{}.key", r.id),
            })
    };
    let footer_master = master(&record.footer_key)?;
    let footer_key = data_key()?;
    let wrapped = wrap(&footer_master, &record.footer_key.id, &footer_key)?;
    let mut builder = FileEncryptionProperties::builder(footer_key)
        .with_plaintext_footer(true)
        .with_footer_key_metadata(key_material(true, &record.footer_key.id, &wrapped).into_bytes());
    let column_master = master(&record.column_key)?;
    for c in &record.columns {
        let k = data_key()?;
        let wrapped = wrap(&column_master, &record.column_key.id, &k)?;
        let material = key_material(false, &record.column_key.id, &wrapped);
        builder = builder.with_column_key_and_metadata(c, k, material.into_bytes());
    }
    builder
        .build()
        .map_err(|e| CryptoError::Material(e.to_string()))
}

/// The key retriever of a reader: unwraps each data key with the master key its material names.
struct Unwrapper(MasterKeys);

impl KeyRetriever for Unwrapper {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let general = |e: CryptoError| parquet::errors::ParquetError::General(e.to_string());
        let (id, wrapped) = parse_key_material(key_metadata).map_err(general)?;
        let master = self.0.get(&id).ok_or_else(|| {
            general(CryptoError::Missing {
                env: crate::identity::keys::master_key_env(&id),
                file: format!("<state dir>/keys/master/{id}.key"),
                id: id.clone(),
            })
        })?;
        unwrap(master, &id, &wrapped).map_err(general)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::parse(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_wrapped_key_unwraps_with_its_master_key_only() {
        let (a, b) = (key(1), key(2));
        let dek = data_key().unwrap();
        let w = wrap(&a, "cols", &dek).unwrap();
        assert_eq!(unwrap(&a, "cols", &w).unwrap(), dek);
        assert!(matches!(
            unwrap(&b, "cols", &w),
            Err(CryptoError::WrongKey { .. })
        ));
        // The id is bound to the wrapped key: the same key under another id fails too.
        assert!(unwrap(&a, "other", &w).is_err());
        // Fresh nonces: wrapping twice gives two different texts.
        assert_ne!(w, wrap(&a, "cols", &dek).unwrap());
    }

    #[test]
    fn key_material_round_trips_in_the_parquet_key_tools_format() {
        let m = key_material(true, "footer", "d3JhcHBlZA==");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["keyMaterialType"], "PKMT1");
        assert_eq!(v["kmsInstanceID"], "DEFAULT");
        assert_eq!(v["internalStorage"], true);
        assert_eq!(
            parse_key_material(m.as_bytes()).unwrap(),
            ("footer".to_string(), "d3JhcHBlZA==".to_string())
        );
        let c: serde_json::Value =
            serde_json::from_str(&key_material(false, "cols", "eA==")).unwrap();
        assert!(c.get("kmsInstanceID").is_none());
        assert_eq!(c["isFooterKey"], false);
    }
}
