"""wechatpy's message crypto, driven by tests/it/wechatpy.rs.

Reads one JSON array of requests on stdin and writes one JSON array of
replies (same order) on stdout. Every request has an "op":

  signature        token, timestamp, nonce, encrypt -> {signature}
  encrypt_message  token, key, appid, xml, nonce, timestamp, random (hex of
                   16 bytes, or null for wechatpy's own random string)
                   -> {encrypt, signature, body}: WeChatCrypto.encrypt_message
  decrypt_message  token, key, appid, body, signature, timestamp, nonce
                   -> {xml} or {error}: WeChatCrypto.decrypt_message
  decrypt          key, appid, encrypt -> {xml} or {error}: PrpCrypto.decrypt
  raw_encrypt      key, plain (hex, a multiple of 16 bytes) -> {encrypt}:
                   wechatpy's AES-256-CBC alone, no framing or padding

"key" is the 43-character EncodingAESKey. Errors are reported as the
exception's class name, never raised.
"""

import base64
import json
import sys

import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature
from wechatpy.crypto.base import WeChatCipher
from wechatpy.utils import to_text


def aes_key(encoding_aes_key):
    return base64.b64decode(encoding_aes_key + "=")


def prp_with(random_hex):
    """PrpCrypto whose 16 leading bytes are the given ones."""
    if random_hex is None:
        return PrpCrypto
    random = bytes.fromhex(random_hex)

    class FixedRandom(PrpCrypto):
        def get_random_string(self):
            return random

    return FixedRandom


def handle(req):
    op = req["op"]
    if op == "signature":
        sig = _get_signature(req["token"], req["timestamp"], req["nonce"], req["encrypt"])
        return {"signature": sig}
    if op == "encrypt_message":
        crypto = WeChatCrypto(req["token"], req["key"], req["appid"])
        body = crypto._encrypt_message(
            req["xml"], req["nonce"], req["timestamp"], prp_with(req.get("random"))
        )
        parsed = xmltodict.parse(body)["xml"]
        return {
            "encrypt": parsed["Encrypt"],
            "signature": parsed["MsgSignature"],
            "body": body,
        }
    if op == "decrypt_message":
        crypto = WeChatCrypto(req["token"], req["key"], req["appid"])
        try:
            xml = crypto.decrypt_message(
                req["body"], req["signature"], req["timestamp"], req["nonce"]
            )
        except Exception as e:  # noqa: BLE001 - the class name is the answer
            return {"error": type(e).__name__}
        return {"xml": to_text(xml)}
    if op == "decrypt":
        try:
            xml = PrpCrypto(aes_key(req["key"])).decrypt(req["encrypt"], req["appid"])
        except Exception as e:  # noqa: BLE001
            return {"error": type(e).__name__}
        return {"xml": to_text(xml)}
    if op == "raw_encrypt":
        cipher = WeChatCipher(aes_key(req["key"]))
        raw = cipher.encrypt(bytes.fromhex(req["plain"]))
        return {"encrypt": base64.b64encode(raw).decode("ascii")}
    return {"error": "unknown op " + op}


def main():
    requests = json.load(sys.stdin)
    json.dump([handle(r) for r in requests], sys.stdout)


if __name__ == "__main__":
    main()
