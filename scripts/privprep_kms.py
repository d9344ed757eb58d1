"""Read privprep's encrypted Parquet outputs with pyarrow.

privprep encrypts outputs with Parquet modular encryption: each file has fresh data keys,
wrapped by master keys that privprep names by id (`[output.encryption]` footer_key and
column_key) and stores as Parquet key material (PKMT1, internal, single wrapping), the format
pyarrow's CryptoFactory reads. This module is the KMS client that unwraps them:

    wrapped = base64(nonce[12] || AES-256-GCM(K, data key, aad=master key id) || tag[16])
    K       = HMAC-SHA256(master key, b"privprep-master-key-v1")

A master key is read from the environment variable PRIVPREP_MASTER_KEY_<ID> (the id upper-cased,
`-` and `.` as `_`) or from the file <dir>/<id>.key, where <dir> is PRIVPREP_MASTER_KEY_DIR or
`.privprep/keys/master`; the text is 64 hex digits or base64, as privprep writes it.

    import privprep_kms
    table = privprep_kms.read_table("out/tickets.parquet", key_dir=".privprep/keys/master")

Needs pyarrow and cryptography (`pip install pyarrow cryptography`).
"""

import base64
import binascii
import hashlib
import hmac
import os
import pathlib
import re

import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LABEL = b"privprep-master-key-v1"


def _parse_key(text):
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        return binascii.unhexlify(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return base64.urlsafe_b64decode(padded)


def load_master_key(key_id, key_dir=None):
    """The bytes of master key `key_id`, from the environment or its key file."""
    env = "PRIVPREP_MASTER_KEY_" + re.sub(r"[-.]", "_", key_id).upper()
    if os.environ.get(env) is not None:
        return _parse_key(os.environ[env])
    folder = key_dir or os.environ.get("PRIVPREP_MASTER_KEY_DIR") or ".privprep/keys/master"
    return _parse_key(pathlib.Path(folder, key_id + ".key").read_text())


def _wrapping_key(key_id, key_dir):
    return hmac.new(load_master_key(key_id, key_dir), LABEL, hashlib.sha256).digest()


class PrivprepKms(pe.KmsClient):
    """pyarrow KMS client for privprep's master keys."""

    def __init__(self, key_dir=None):
        pe.KmsClient.__init__(self)
        self.key_dir = key_dir

    def wrap_key(self, key_bytes, master_key_identifier):
        nonce = os.urandom(12)
        sealed = AESGCM(_wrapping_key(master_key_identifier, self.key_dir)).encrypt(
            nonce, key_bytes, master_key_identifier.encode()
        )
        return base64.b64encode(nonce + sealed).decode()

    def unwrap_key(self, wrapped_key, master_key_identifier):
        raw = base64.b64decode(wrapped_key)
        return AESGCM(_wrapping_key(master_key_identifier, self.key_dir)).decrypt(
            raw[:12], raw[12:], master_key_identifier.encode()
        )


def decryption_properties(key_dir=None):
    """pyarrow FileDecryptionProperties for files privprep encrypted."""
    factory = pe.CryptoFactory(lambda _config: PrivprepKms(key_dir))
    return factory.file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration()
    )


def read_table(path, key_dir=None, **kwargs):
    """The whole table of an encrypted privprep output."""
    return pq.read_table(path, decryption_properties=decryption_properties(key_dir), **kwargs)
