#!/usr/bin/env python3
"""Checks kps-control-plane's Tencent calls and the credentials of both
clouds as the clouds check them, over HTTP, with signers written from the
clouds' documentation (cloudsign.py): Tencent's old API and its fan-out,
signed (SecretId, Timestamp, Nonce, Signature), Tencent API 3.0
(TC3-HMAC-SHA256) and its four actions, Huawei AK/SK (SDK-HMAC-SHA256,
X-Sdk-Date), the refusals with each cloud's codes, and the instances a key
pair shows once agents report their tasks done.

    test_signing.py PATH/TO/kps-control-plane

Prints PASS or FAIL per check and exits 1 when any check failed."""

import json
import subprocess
import sys
import time
import urllib.parse

import cloudsign as cs
from test_emulator import (AGENT_TOKEN, API_TOKEN, PUB1, PUB2, UUID4, Emulator, check, failures, fingerprint,
                           tasks_of)
import test_emulator

ASSOC = "AssociateInstancesKeyPairs"
DISASSOC = "DisassociateInstancesKeyPairs"


def v3(emu, action, body, raw=None, **sign):
    """API 3.0: (status, Response object, raw text)."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = cs.tc3(emu.host, action, data if raw is None else sign.pop("signed_body", data), **sign)
    st, parsed, text, _ = emu.request("POST", "/", data, headers)
    return st, (parsed or {}).get("Response", {}), text


def aksk(emu, method, path, body=None, query=None, signed_body=None, **sign):
    """Huawei with AK/SK signing."""
    data = json.dumps(body).encode() if body is not None else None
    q = query or {}
    headers = cs.huawei(method, emu.host, f"/v3/{test_emulator.PROJECT}{path}", q,
                        signed_body if signed_body is not None else data,
                        {"Content-Type": "application/json", "X-Project-Id": test_emulator.PROJECT}, **sign)
    url = f"/v3/{test_emulator.PROJECT}{path}" + ("?" + urllib.parse.urlencode(q) if q else "")
    return emu.request(method, url, data, headers)


def error_code(resp):
    return (resp.get("Error") or {}).get("Code")


def running(emu):
    _, body, _, _ = emu.api("GET", "/running-tasks")
    return body.get("total")


def finish(emu, server, success=True, tasks=None):
    """Plays the agent: takes server's tasks (or reports those it took)."""
    tasks = tasks if tasks is not None else tasks_of(emu.poll(server, 1)) or []
    for t in tasks:
        res = {"task_id": t["task_id"], "server_id": server, "status": "SUCCESS" if success else "FAILED"}
        if not success:
            res.update(error_code="KPS.AGENT.AUTH_FAILED", error_msg="refused")
        emu.result(server, t["task_id"], res)
    return tasks


def check_tencent_old_api(emu):
    st, body, text, _ = emu.cvm({"Action": "AssociateInstancesKeyPairs", "Version": "2017-03-12",
                                 "InstanceIds.1": "ins-aaaa0001", "InstanceIds.2": "ins-aaaa0002",
                                 "KeyIds.1": emu.kp1_id, "KeyIds.2": "kp2", "ForceStop": "TRUE"})
    resp = (body or {}).get("Response", {})
    check("Tencent associate answers RequestId", st == 200 and set(resp) == {"RequestId"}
          and UUID4.match(resp["RequestId"]) is not None, f"{st} {text}")
    for inst in ("ins-aaaa0001", "ins-aaaa0002"):
        tasks = tasks_of(emu.poll(inst, 1))
        ok = tasks is not None and len(tasks) == 1
        t = tasks[0] if ok else {}
        check(f"Tencent associate task reaches {inst}", ok and t.get("action") == "associate"
              and UUID4.match(t.get("task_id", "")) is not None
              and t.get("keypairs") == [{"name": "kp1", "public_key": PUB1}, {"name": "kp2", "public_key": PUB2}]
              and t.get("server") == {"id": inst, "disable_password": True}
              and set(t) == {"task_id", "action", "keypairs", "server"}, f"{tasks}")
        if ok:
            _, view, _, _ = emu.task(t["task_id"])
            check(f"Tencent associate task of {inst} is RUNNING_RESET", view.get("task_status") == "RUNNING_RESET"
                  and view.get("server_id") == inst, f"{view}")

    st, body, text, _ = emu.cvm({"Action": "DisassociateInstancesKeyPairs", "InstanceIds.1": "ins-bbbb0001",
                                 "KeyIds.1": "kp1", "ForceStop": "FALSE"}, method="POST", path="/v2/index.php")
    check("Tencent disassociate by form POST", st == 200 and "Error" not in body.get("Response", {}), text)
    tasks = tasks_of(emu.poll("ins-bbbb0001", 1))
    check("Tencent disassociate task shape", tasks and len(tasks) == 1 and tasks[0].get("action") == "disassociate"
          and tasks[0].get("keypairs") == [{"name": "kp1"}] and tasks[0].get("server") == {"id": "ins-bbbb0001"},
          f"{tasks}")

    _, before, _, _ = emu.api("GET", "/running-tasks")
    many = {"Action": "AssociateInstancesKeyPairs", "KeyIds.1": "kp1"}
    many.update({f"InstanceIds.{i}": f"ins-many{i:04d}" for i in range(1, 102)})
    st, body, text, _ = emu.cvm(many, method="POST")
    err = (body or {}).get("Response", {}).get("Error", {})
    check("Tencent 101 instances refused", st == 200 and err.get("Code") == "InvalidParameterValue.LimitExceeded"
          and "RequestId" in body["Response"], text[:300])
    _, after, _, _ = emu.api("GET", "/running-tasks")
    check("refused Tencent call queues nothing", before.get("total") == after.get("total"),
          f"{before.get('total')} {after.get('total')}")
    del many["InstanceIds.101"]
    st, body, text, _ = emu.cvm(many, method="POST")
    _, after, _, _ = emu.api("GET", "/running-tasks")
    check("Tencent 100 instances fan out to 100 tasks", "Error" not in body.get("Response", {})
          and after.get("total") == before.get("total") + 100, text[:200])

    errors = [("unknown key", {"Action": "AssociateInstancesKeyPairs", "InstanceIds.1": "i1", "KeyIds.1": "skey-00000000"},
               "InvalidKeyPairId.NotFound"),
              ("no instances", {"Action": "AssociateInstancesKeyPairs", "KeyIds.1": "kp1"}, "MissingParameter"),
              ("no keys", {"Action": "DisassociateInstancesKeyPairs", "InstanceIds.1": "i1"}, "MissingParameter"),
              ("no action", {"InstanceIds.1": "i1", "KeyIds.1": "kp1"}, "MissingParameter"),
              ("unknown action", {"Action": "RebootInstances", "InstanceIds.1": "i1", "KeyIds.1": "kp1"},
               "InvalidAction"),
              ("bad ForceStop", {"Action": "AssociateInstancesKeyPairs", "InstanceIds.1": "i1", "KeyIds.1": "kp1",
                                 "ForceStop": "maybe"}, "InvalidParameterValue"),
              ("malformed instance", {"Action": "AssociateInstancesKeyPairs", "InstanceIds.1": "i 1",
                                      "KeyIds.1": "kp1"}, "InvalidInstanceId.Malformed"),
              ("instance twice", {"Action": "AssociateInstancesKeyPairs", "InstanceIds.1": "i1",
                                  "InstanceIds.2": "i1", "KeyIds.1": "kp1"}, "InvalidParameterValue"),
              ("bad index", {"Action": "AssociateInstancesKeyPairs", "InstanceIds.x": "i1", "KeyIds.1": "kp1"},
               "InvalidParameter")]
    for label, params, code in errors:
        st, body, text, _ = emu.cvm(params)
        err = (body or {}).get("Response", {}).get("Error", {})
        check(f"Tencent {label} -> {code}", st == 200 and err.get("Code") == code
              and isinstance(err.get("Message"), str), text)
    _, final, _, _ = emu.api("GET", "/running-tasks")
    check("refused Tencent calls queue nothing", final.get("total") == after.get("total"), f"{final.get('total')}")


def check_tencent_v1(emu):
    base = {"Action": DISASSOC, "InstanceIds.1": "ins-v1auth", "KeyIds.1": "kp1"}
    before = running(emu)
    st, body, text, _ = emu.cvm(base)
    check("old API: a signed GET is taken (HmacSHA256)", st == 200 and "Error" not in body["Response"], text)
    st, body, text, _ = emu.cvm(base, method="POST", path="/v2/index.php", sign_method="HmacSHA1")
    check("old API: a signed form POST is taken (HmacSHA1)", "Error" not in body["Response"], text)
    st, body, text, _ = emu.cvm(base, sign_method=None)
    check("old API: no SignatureMethod means HmacSHA1", "Error" not in body["Response"], text)
    st, body, text, _ = emu.cvm({"Action": DISASSOC, "InstanceIds.0": "ins-v1zero", "InstanceIds.1": "ins-v1one",
                                 "KeyIds.0": "kp1"}, method="POST")
    check("old API: 0-based lists (API 3.0 form calls) are taken", "Error" not in body["Response"], text)
    check("old API: the signed calls queued their tasks", running(emu) == before + 5, f"{before} {running(emu)}")
    before = running(emu)
    now = int(time.time())
    refusals = [
        ("wrong SecretKey", {"secret_key": "not-the-key"}, "AuthFailure.SignatureFailure"),
        ("unknown SecretId", {"secret_id": "AKIDnobody"}, "AuthFailure.SecretIdNotFound"),
        ("Timestamp 6 minutes old", {"timestamp": now - 360}, "AuthFailure.SignatureExpire"),
        ("Timestamp 6 minutes ahead", {"timestamp": now + 360}, "AuthFailure.SignatureExpire"),
        ("Nonce 0", {"nonce": 0}, "InvalidParameter"),
        ("unknown SignatureMethod", {"sign_method": "HmacMD5"}, "InvalidParameterValue"),
    ]
    for label, sign, code in refusals:
        st, body, text, _ = emu.cvm(base, **sign)
        check(f"old API: {label} -> {code}", st == 200 and error_code(body["Response"]) == code
              and "RequestId" in body["Response"], text)
    signed = cs.tencent_v1("GET", emu.host, "/", base)
    tampered = dict(signed, **{"InstanceIds.1": "ins-other"})
    st, body, text, _ = emu.cvm(tampered, signed=False)
    check("old API: a parameter changed after signing -> SignatureFailure",
          error_code(body["Response"]) == "AuthFailure.SignatureFailure", text)
    st, body, text, _ = emu.cvm(signed, signed=False, method="POST")
    check("old API: a GET signature replayed as POST -> SignatureFailure",
          error_code(body["Response"]) == "AuthFailure.SignatureFailure", text)
    st, body, text, _ = emu.cvm(base, signed=False, headers={"X-Auth-Token": API_TOKEN})
    check("old API: X-Auth-Token is no Tencent credential", error_code(body["Response"]) == "MissingParameter"
          and "SecretId" in body["Response"]["Error"]["Message"], text)
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    st, body, text, _ = emu.cvm(unsigned, signed=False)
    check("old API: no Signature -> MissingParameter", error_code(body["Response"]) == "MissingParameter", text)
    check("old API: refused calls queue nothing", running(emu) == before, f"{before} {running(emu)}")


def check_tc3_auth(emu):
    before = running(emu)
    body = {"InstanceIds": ["ins-tc3auth"], "KeyIds": [emu.kp1_id]}
    st, resp, text = v3(emu, DISASSOC, body)
    check("API 3.0: a TC3 call signed with the Host's port is taken", st == 200 and set(resp) == {"RequestId"}
          and UUID4.match(resp.get("RequestId", "")), text)
    now = int(time.time())
    refusals = [
        ("wrong SecretKey", {"secret_key": "nope"}, "AuthFailure.SignatureFailure"),
        ("unknown SecretId", {"secret_id": "AKIDnobody"}, "AuthFailure.SecretIdNotFound"),
        ("timestamp 301 s old", {"timestamp": now - 301}, "AuthFailure.SignatureExpire"),
        ("timestamp 6 minutes ahead", {"timestamp": now + 360}, "AuthFailure.SignatureExpire"),
        ("credential date not the timestamp's", {"date": "2001-01-01"}, "AuthFailure.SignatureFailure"),
        ("another service's scope", {"service": "cbs"}, "AuthFailure.SignatureFailure"),
    ]
    for label, sign, code in refusals:
        st, resp, text = v3(emu, DISASSOC, body, **sign)
        check(f"API 3.0: {label} -> {code}", st == 200 and error_code(resp) == code and "RequestId" in resp, text)
    data = json.dumps(body).encode()
    st, resp, text = v3(emu, DISASSOC, None, raw=data.replace(b"tc3auth", b"tc3evil"), signed_body=data)
    check("API 3.0: a body changed after signing -> SignatureFailure",
          error_code(resp) == "AuthFailure.SignatureFailure", text)
    headers = cs.tc3(emu.host, DISASSOC, data)
    for label, change, code in (
            ("no Authorization", {"Authorization": None}, "AuthFailure.InvalidAuthorization"),
            ("Authorization not TC3", {"Authorization": "Bearer x"}, "AuthFailure.InvalidAuthorization"),
            ("no X-TC-Timestamp", {"X-TC-Timestamp": None}, "MissingParameter"),
            ("X-TC-Action changed after signing", {"X-TC-Action": ASSOC}, None)):
        h = {k: v for k, v in {**headers, **change}.items() if v is not None}
        st, parsed, text, _ = emu.request("POST", "/", data, h)
        resp = (parsed or {}).get("Response", {})
        if code:
            check(f"API 3.0: {label} -> {code}", error_code(resp) == code, text)
        else:
            # X-TC-Action is not among SignedHeaders (the SDKs sign
            # content-type;host), so the cloud takes it: an associate.
            check(f"API 3.0: {label} is taken as the cloud takes it", "Error" not in resp, text)
    st, _, text, _ = emu.request("POST", "/", data, {**headers, "X-Auth-Token": API_TOKEN, "Authorization": ""})
    check("API 3.0: X-Auth-Token is no Tencent credential", "AuthFailure" in text, text)
    check("API 3.0: refused calls queue nothing", running(emu) == before + 2, f"{before} {running(emu)}")


def check_tc3_actions(emu):
    st, resp, text = v3(emu, "ImportKeyPair", {"KeyName": "tc3_key", "ProjectId": 0, "PublicKey": PUB2})
    key_id = resp.get("KeyId", "")
    check("ImportKeyPair answers KeyId", st == 200 and key_id.startswith("skey-") and "RequestId" in resp, text)
    st, resp, text = v3(emu, "DescribeKeyPairs", {"KeyIds": [key_id]})
    kp = (resp.get("KeyPairSet") or [{}])[0]
    check("DescribeKeyPairs shows the imported key", resp.get("TotalCount") == 1 and kp.get("KeyId") == key_id
          and kp.get("KeyName") == "tc3_key" and kp.get("PublicKey") == PUB2 and kp.get("ProjectId") == 0
          and kp.get("AssociatedInstanceIds") == [] and kp.get("CreatedTime", "").endswith("Z"), text)
    st, resp, text = v3(emu, "DescribeKeyPairs", {"Filters": [{"Name": "key-name", "Values": ["kp1", "tc3_key"]}],
                                                 "Limit": 1, "Offset": 1})
    check("DescribeKeyPairs key-name filter, Limit and Offset", resp.get("TotalCount") == 2
          and [k["KeyName"] for k in resp.get("KeyPairSet", [])] == ["tc3_key"], text)
    _, huawei, _, _ = emu.api("POST", "/keypairs", {"keypair": {"name": "kp3", "public_key": PUB1}})
    st, resp, text = v3(emu, "DescribeKeyPairs", {"Limit": 100})
    names = [k["KeyName"] for k in resp.get("KeyPairSet", [])]
    check("DescribeKeyPairs lists every key in import order", names[-2:] == ["tc3_key", "kp3"]
          and resp.get("TotalCount") == len(names), text)

    before = running(emu)
    st, resp, text = v3(emu, ASSOC, {"InstanceIds": ["ins-tc3a", "ins-tc3b"], "KeyIds": [key_id, emu.kp1_id],
                                    "ForceStop": True})
    check("AssociateInstancesKeyPairs answers RequestId", set(resp) == {"RequestId"}, text)
    tasks = [tasks_of(emu.poll(i, 1)) for i in ("ins-tc3a", "ins-tc3b")]
    check("API 3.0 associate: one task per instance, keys in order, password off",
          all(t and len(t) == 1 and t[0]["action"] == "associate"
              and t[0]["keypairs"] == [{"name": "tc3_key", "public_key": PUB2}, {"name": "kp1", "public_key": PUB1}]
              and t[0]["server"]["disable_password"] is True for t in tasks), f"{tasks}")
    check("API 3.0 associate queued two tasks", running(emu) == before + 2, f"{before} {running(emu)}")
    emu.tc3_tasks = tasks

    long_name = "k" * 26
    refusals = [
        ("ImportKeyPair", {"KeyName": "tc3_key", "ProjectId": 0, "PublicKey": PUB1}, "InvalidKeyPairName.Duplicate"),
        ("ImportKeyPair", {"KeyName": "bad-name", "ProjectId": 0, "PublicKey": PUB1},
         "InvalidKeyPairNameIncludeIllegalChar"),
        ("ImportKeyPair", {"KeyName": long_name, "ProjectId": 0, "PublicKey": PUB1}, "InvalidKeyPairNameTooLong"),
        ("ImportKeyPair", {"KeyName": "", "ProjectId": 0, "PublicKey": PUB1}, "InvalidKeyPairNameEmpty"),
        ("ImportKeyPair", {"KeyName": "k_bad", "ProjectId": 0, "PublicKey": "ssh-rsa AAAA"},
         "InvalidPublicKey.Malformed"),
        ("ImportKeyPair", {"KeyName": "k_proj", "ProjectId": 7, "PublicKey": PUB1}, "InvalidProjectId.NotFound"),
        ("ImportKeyPair", {"KeyName": "k_noproj", "PublicKey": PUB1}, "MissingParameter"),
        ("ImportKeyPair", {"KeyName": "k_x", "ProjectId": 0, "PublicKey": PUB1, "Colour": 1}, "UnknownParameter"),
        ("DescribeKeyPairs", {"KeyIds": ["skey-zzzzzzzz"]}, "InvalidKeyPairId.NotFound"),
        ("DescribeKeyPairs", {"KeyIds": ["kp1"]}, "InvalidKeyPairId.Malformed"),
        ("DescribeKeyPairs", {"Limit": 101}, "InvalidParameterValue"),
        ("DescribeKeyPairs", {"Filters": [{"Name": "colour", "Values": ["x"]}]}, "InvalidFilter"),
        (ASSOC, {"InstanceIds": [f"ins-{i}" for i in range(101)], "KeyIds": [key_id]},
         "InvalidParameterValue.LimitExceeded"),
        (ASSOC, {"InstanceIds": ["ins-1"], "KeyIds": ["kp1"]}, "InvalidKeyPairId.Malformed"),
        (ASSOC, {"InstanceIds": ["ins-1"], "KeyIds": ["skey-00000000"]}, "InvalidKeyPairId.NotFound"),
        (ASSOC, {"InstanceIds": ["ins-1"]}, "MissingParameter"),
        (ASSOC, {"InstanceIds": [], "KeyIds": [key_id]}, "MissingParameter"),
        (ASSOC, {"InstanceIds": ["ins 1"], "KeyIds": [key_id]}, "InvalidInstanceId.Malformed"),
        (ASSOC, {"InstanceIds": ["ins-1", "ins-1"], "KeyIds": [key_id]}, "InvalidParameterValue"),
        (ASSOC, {"InstanceIds": ["ins-1"], "KeyIds": [key_id], "ForceStop": "TRUE"}, "InvalidParameter"),
        (ASSOC, {"InstanceIds": "ins-1", "KeyIds": [key_id]}, "InvalidParameter"),
        (DISASSOC, {"InstanceIds": ["ins-1"], "KeyIds": [key_id], "DryRun": True}, "UnknownParameter"),
        ("RebootInstances", {"InstanceIds": ["ins-1"]}, "InvalidAction"),
    ]
    before = running(emu)
    for action, body, code in refusals:
        st, resp, text = v3(emu, action, body)
        check(f"{action} {json.dumps(body)[:60]} -> {code}", st == 200 and error_code(resp) == code
              and isinstance(resp["Error"].get("Message"), str) and "RequestId" in resp, text[:300])
    for label, raw, sign, code in (("wrong version", None, {"version": "2020-01-01"}, "NoSuchVersion"),
                                   ("no region", None, {"region": None}, "MissingParameter"),
                                   ("body not JSON", b"{nope", {}, "InvalidParameter"),
                                   ("body an array", b"[]", {}, "InvalidParameter")):
        st, resp, text = v3(emu, ASSOC, {"InstanceIds": ["ins-1"], "KeyIds": [key_id]}, raw=raw, **sign)
        check(f"API 3.0 {label} -> {code}", error_code(resp) == code, text)
    st, resp, text = v3(emu, ASSOC, {}, content_type="application/x-www-form-urlencoded")
    check("API 3.0 POST that is not JSON -> InvalidParameter", error_code(resp) == "InvalidParameter", text)
    check("refused API 3.0 calls queue nothing", running(emu) == before, f"{before} {running(emu)}")
    emu.tc3_key_id = key_id


def describe(emu, key_id):
    _, resp, _ = v3(emu, "DescribeKeyPairs", {"KeyIds": [key_id]})
    return (resp.get("KeyPairSet") or [{}])[0].get("AssociatedInstanceIds")


def check_bindings(emu):
    """AssociatedInstanceIds follow what agents report, as on the cloud."""
    a, b = emu.tc3_key_id, emu.kp1_id
    check("a key shows no instance before its agent reports", describe(emu, a) == [], f"{describe(emu, a)}")
    finish(emu, "ins-tc3a", tasks=emu.tc3_tasks[0])
    finish(emu, "ins-tc3b", success=False, tasks=emu.tc3_tasks[1])
    check("SUCCESS binds the instance, FAILED does not", describe(emu, a) == ["ins-tc3a"]
          and "ins-tc3a" in describe(emu, b), f"{describe(emu, a)} {describe(emu, b)}")
    v3(emu, ASSOC, {"InstanceIds": ["ins-tc3a"], "KeyIds": [b]})
    finish(emu, "ins-tc3a")
    check("an associate replaces the instance's keys", describe(emu, a) == [] and "ins-tc3a" in describe(emu, b),
          f"{describe(emu, a)} {describe(emu, b)}")
    v3(emu, DISASSOC, {"InstanceIds": ["ins-tc3a"], "KeyIds": [b]})
    finish(emu, "ins-tc3a")
    check("a disassociate unbinds the named key", "ins-tc3a" not in describe(emu, b), f"{describe(emu, b)}")
    emu.api("POST", "/keypairs/associate", {"keypair_name": "tc3_key", "server": {"id": "ecs-1"}})
    finish(emu, "ecs-1")
    check("a Huawei associate shows in DescribeKeyPairs", describe(emu, a) == ["ecs-1"], f"{describe(emu, a)}")
    emu.api("POST", "/keypairs/disassociate", {"server": {"id": "ecs-1"}})
    finish(emu, "ecs-1")
    check("a Huawei disassociate without keypair_name unbinds every key", describe(emu, a) == [],
          f"{describe(emu, a)}")


def check_huawei_aksk(emu):
    st, body, text, _ = aksk(emu, "POST", "/keypairs", {"keypair": {"name": "hw_aksk", "public_key": PUB1}})
    check("AK/SK: a signed import is taken", st == 200 and body["keypair"]["fingerprint"] == fingerprint(PUB1), text)
    st, body, text, _ = aksk(emu, "POST", "/keypairs/associate", {"keypair_name": "hw_aksk", "server": {"id": "ecs-2"}})
    tid = (body or {}).get("task_id", "")
    check("AK/SK: a signed associate answers 202", st == 202 and UUID4.match(tid), text)
    st, body, text, _ = aksk(emu, "GET", f"/tasks/{tid}")
    check("AK/SK: ListKeypairTask", st == 200 and body.get("task_status") == "READY_RESET", text)
    st, body, text, _ = aksk(emu, "GET", "/running-tasks", query={"offset": "0", "limit": "2"})
    check("AK/SK: signed query parameters", st == 200 and len(body.get("tasks", [])) == 2, text)
    before = running(emu)
    now = time.time()
    data = json.dumps({"keypair_name": "hw_aksk", "server": {"id": "ecs-3"}}).encode()
    refusals = [
        ("wrong SK", {"sk": "nope"}),
        ("unknown AK", {"ak": "NOBODY"}),
        ("X-Sdk-Date 16 minutes old", {"when": now - 16 * 60}),
        ("X-Sdk-Date 16 minutes ahead", {"when": now + 16 * 60}),
        ("a body changed after signing", {"signed_body": data.replace(b"ecs-3", b"ecs-4")}),
    ]
    for label, sign in refusals:
        st, body, text, _ = aksk(emu, "POST", "/keypairs/associate", json.loads(data), **sign)
        check(f"AK/SK: {label} -> 401 KPS.0401", st == 401 and body.get("error_code") == "KPS.0401"
              and isinstance(body.get("error_msg"), str), text)
    st, body, text, _ = aksk(emu, "POST", "/keypairs/associate", json.loads(data), when=now - 14 * 60)
    check("AK/SK: X-Sdk-Date 14 minutes old is taken", st == 202, text)
    headers = cs.huawei("POST", emu.host, f"/v3/{test_emulator.PROJECT}/keypairs/associate", {}, data,
                        {"Content-Type": "application/json", "X-Project-Id": "p"})
    for label, change in (("a signed header missing", {"X-Project-Id": None}),
                          ("a signed header changed", {"X-Project-Id": "q"}),
                          ("no X-Sdk-Date", {"X-Sdk-Date": None}),
                          ("Authorization without host signed",
                           {"Authorization": headers["Authorization"].replace("host;", "")})):
        h = {k: v for k, v in {**headers, **change}.items() if v is not None}
        st, body, text, _ = emu.request("POST", f"/v3/{test_emulator.PROJECT}/keypairs/associate", data, h)
        check(f"AK/SK: {label} -> 401", st == 401 and body.get("error_code") == "KPS.0401", text)
    st, body, text, _ = aksk(emu, "GET", "/running-tasks", query={f"p{i}": "v" for i in range(300)})
    check("AK/SK: more query parameters than it signs -> 401 with a reason", st == 401
          and "query parameters" in body.get("error_msg", ""), text)
    check("AK/SK: refused calls queue nothing", running(emu) == before + 1, f"{before} {running(emu)}")


def check_options(exe):
    emu = Emulator(exe, bare=True)
    try:
        st, body, text, _ = emu.cvm({"Action": DISASSOC, "InstanceIds.1": "i1", "KeyIds.1": "kp1"})
        check("without --tencent-secret Tencent calls are refused",
              error_code(body["Response"]) == "AuthFailure.SecretIdNotFound", text)
        st, body, text, _ = aksk(emu, "GET", "/running-tasks")
        check("without --huawei-aksk AK/SK calls are refused", st == 401, text)
    finally:
        emu.stop()
    p = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--agent-token", AGENT_TOKEN, "--tencent-secret",
                          f"{cs.TENCENT_ID}:{cs.TENCENT_KEY}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    check("--tencent-secret alone is enough to start", line.startswith("listening on "), line)
    try:
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        check("the SecretKey is wiped from the command line", cs.TENCENT_KEY.encode() not in cmdline
              and cs.TENCENT_ID.encode() in cmdline, repr(cmdline))
    finally:
        p.terminate()
        p.wait(10)
    for label, args in (("no API credential", []), ("AK:SK without SK", ["--huawei-aksk", "AK:"]),
                        ("ID:KEY without a colon", ["--tencent-secret", "idkey"]),
                        ("empty ID", ["--tencent-secret", ":key"])):
        p = subprocess.run([exe, "--listen", "127.0.0.1:0", "--agent-token", "b", *args], capture_output=True,
                           text=True, timeout=10)
        check(f"usage error ({label}) exits 2", p.returncode == 2 and "usage" in p.stderr, f"{p.returncode}")


def main():
    exe = sys.argv[1]
    emu = Emulator(exe)
    emu.api("POST", "/keypairs", {"keypair": {"name": "kp1", "public_key": PUB1}})
    emu.api("POST", "/keypairs", {"keypair": {"name": "kp2", "public_key": PUB2}})
    _, body, _ = v3(emu, "DescribeKeyPairs", {"Filters": [{"Name": "key-name", "Values": ["kp1"]}]})
    emu.kp1_id = body.get("KeyPairSet", [{}])[0].get("KeyId", "")
    try:
        for section in (check_tencent_old_api, check_tencent_v1, check_tc3_auth, check_tc3_actions, check_bindings, check_huawei_aksk):
            try:
                section(emu)
            except Exception as e:  # a broken precondition fails the section, not the run
                check(section.__name__, False, f"{type(e).__name__}: {e}")
    finally:
        rc, out, err = emu.stop()
    check("exits 0 on SIGTERM", rc == 0, f"{rc}")
    check("no secret key on stdout or stderr", cs.TENCENT_KEY not in out + err and cs.HUAWEI_SK not in out + err,
          repr(err[:200]))
    try:
        check_options(exe)
    except Exception as e:
        check("check_options", False, f"{type(e).__name__}: {e}")
    print(f"{test_emulator.passes} passed, {len(failures)} failed")
    if failures:
        print("failed: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
