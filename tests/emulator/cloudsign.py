"""The clouds' request signatures, written here from their documentation
independently of the emulator's C code, for test_emulator.py: Tencent API
3.0 (TC3-HMAC-SHA256), Tencent's old API (Signature parameter) and Huawei's
AK/SK signing (SDK-HMAC-SHA256). Each returns what the request must carry.
The real SDKs are driven by sdk_check.py."""

import base64
import hashlib
import hmac
import time
import urllib.parse

TENCENT_ID = "AKIDemulatorTests0123456789"
TENCENT_KEY = "tencent-secret-key-never-logged"
HUAWEI_AK = "HWAKEMULATORTESTS0123"
HUAWEI_SK = "huawei-secret-key-never-logged"


def sha256_hex(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def _hmac(key, msg, digest=hashlib.sha256):
    return hmac.new(key if isinstance(key, bytes) else key.encode(), msg.encode(), digest)


def tc3(host, action, body, secret_id=TENCENT_ID, secret_key=TENCENT_KEY, timestamp=None, service="cvm",
        version="2017-03-12", region="ap-guangzhou", content_type="application/json; charset=utf-8", date=None):
    """Headers of a Tencent API 3.0 POST / with body (bytes)."""
    ts = int(time.time()) if timestamp is None else timestamp
    date = date or time.strftime("%Y-%m-%d", time.gmtime(ts))
    signed = "content-type;host"
    canonical = (f"POST\n/\n\ncontent-type:{content_type.lower()}\nhost:{host.lower()}\n\n{signed}\n"
                 f"{sha256_hex(body)}")
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{ts}\n{scope}\n{sha256_hex(canonical)}"
    key = _hmac(("TC3" + secret_key).encode(), date).digest()
    key = _hmac(key, service).digest()
    key = _hmac(key, "tc3_request").digest()
    signature = _hmac(key, to_sign).hexdigest()
    headers = {"Content-Type": content_type, "Host": host, "X-TC-Action": action, "X-TC-Timestamp": str(ts),
               "X-TC-Version": version,
               "Authorization": f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed}, "
                                f"Signature={signature}"}
    if region is not None:
        headers["X-TC-Region"] = region
    return headers


def tencent_v1(method, host, path, params, secret_id=TENCENT_ID, secret_key=TENCENT_KEY, timestamp=None,
               nonce=None, sign_method="HmacSHA256"):
    """params plus the old API's SecretId, Timestamp, Nonce, SignatureMethod
    and Signature: base64(HMAC(key, METHOD host path ? k=v&... sorted))."""
    p = dict(params)
    p.setdefault("SecretId", secret_id)
    p.setdefault("Timestamp", str(int(time.time()) if timestamp is None else timestamp))
    p.setdefault("Nonce", str(nonce if nonce is not None else int.from_bytes(hashlib.sha256(
        str(time.time_ns()).encode()).digest()[:3], "big") + 1))
    if sign_method:
        p["SignatureMethod"] = sign_method
    text = method + host + path + "?" + "&".join(f"{k}={p[k]}" for k in sorted(p))
    digest = hashlib.sha1 if sign_method in (None, "HmacSHA1") else hashlib.sha256
    p["Signature"] = base64.b64encode(_hmac(secret_key, text, digest).digest()).decode()
    return p


def _quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def huawei(method, host, path, query, body, headers=None, ak=HUAWEI_AK, sk=HUAWEI_SK, when=None):
    """Headers for a Huawei AK/SK call: every header given is signed, with
    host and X-Sdk-Date."""
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    h = {"X-Sdk-Date": date, "Host": host, **(headers or {})}
    names = sorted(h, key=str.lower)
    canonical_headers = "".join(f"{n.lower()}:{h[n].strip()}\n" for n in names)
    signed = ";".join(n.lower() for n in names)
    uri = "/".join(_quote(urllib.parse.unquote(seg)) for seg in path.split("/"))
    if not uri.endswith("/"):
        uri += "/"
    q = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    canonical = f"{method}\n{uri}\n{q}\n{canonical_headers}\n{signed}\n{sha256_hex(body or b'')}"
    to_sign = f"SDK-HMAC-SHA256\n{date}\n{sha256_hex(canonical)}"
    signature = _hmac(sk, to_sign).hexdigest()
    h["Authorization"] = f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={signature}"
    return h
