// One call through a cloud's real Node SDK, as a control-plane developer
// would make it against kps-control-plane. Prints one JSON line:
//   {"ok": true, "response": {...}}  or  {"ok": false, "status", "code", "message"}
//
//   node call.js tencent ENDPOINT SECRET_ID SECRET_KEY ACTION JSON [SIGN_METHOD]
//     tencentcloud-sdk-nodejs-cvm's CvmClient; SIGN_METHOD TC3-HMAC-SHA256
//     (API 3.0, the default) or HmacSHA256 / HmacSHA1 (the older signing)
//   node call.js huawei ENDPOINT AK SK PROJECT_ID METHOD PATH [JSON]
//     @huaweicloud/huaweicloud-sdk-core's HcClient and its AK/SK signer
//     (Huawei publishes no KPS package for Node: KPS's own SDKs make this
//     same HcClient call)
"use strict";

// The SDKs log their errors on stdout too: the answer is the marked line.
function print(obj) {
	process.stdout.write("KPS-SDK-RESULT " + JSON.stringify(obj) + "\n");
}

async function tencent(endpoint, secretId, secretKey, action, json, signMethod) {
	const { cvm } = require("tencentcloud-sdk-nodejs-cvm");
	const client = new cvm.v20170312.Client({
		credential: { secretId, secretKey },
		region: "ap-guangzhou",
		profile: {
			signMethod: signMethod || "TC3-HMAC-SHA256",
			httpProfile: { endpoint, protocol: "http://", reqTimeout: 30 },
		},
	});
	try {
		print({ ok: true, response: await client[action](JSON.parse(json)) });
	} catch (e) {
		print({ ok: false, code: e.code || "", message: e.message, requestId: e.requestId || "" });
	}
}

async function huawei(endpoint, ak, sk, project, method, path, json) {
	const { BasicCredentials } = require("@huaweicloud/huaweicloud-sdk-core");
	const { ClientBuilder } = require("@huaweicloud/huaweicloud-sdk-core/ClientBuilder");
	const credentials = new BasicCredentials().withAk(ak).withSk(sk).withProjectId(project);
	const client = new ClientBuilder((hc) => hc).withCredential(credentials).withEndpoint(endpoint).build();
	const options = {
		method,
		url: path,
		contentType: "application/json",
		pathParams: {},
		queryParams: {},
		headers: {},
	};
	if (json)
		options.data = JSON.parse(json);
	try {
		const res = await client.sendRequest(options);
		const status = res.httpStatusCode;
		delete res.httpStatusCode;
		print({ ok: true, status, response: res });
	} catch (e) {
		print({ ok: false, status: e.httpStatusCode || 0, code: e.errorCode || "", message: e.errorMsg || e.message });
	}
}

const [cloud, ...args] = process.argv.slice(2);
if (cloud === "tencent" && (args.length === 5 || args.length === 6))
	tencent(...args);
else if (cloud === "huawei" && (args.length === 6 || args.length === 7))
	huawei(...args);
else {
	process.stderr.write("usage: call.js tencent ENDPOINT ID KEY ACTION JSON [SIGN_METHOD]\n" +
		"       call.js huawei ENDPOINT AK SK PROJECT METHOD PATH [JSON]\n");
	process.exit(2);
}
