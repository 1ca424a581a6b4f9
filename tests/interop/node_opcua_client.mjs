// An independent OPC UA client (node-opcua, not asyncua) checking a bessgw gateway from the outside.
//
// Why: asyncua is both our server and our test client, so a shared misunderstanding of the spec would
// go unnoticed. This script does what an operator's SCADA does — Basic256Sha256/SignAndEncrypt with its
// own application certificate, user name/password login, browse Objects/Campus, read a unit's SocPct
// with its StatusCode, subscribe to the unit's PowerKw, call the unit's SetPower and wait for the
// subscription to report the new power — and prints ONE JSON line of what it saw.
//
// Usage: node node_opcua_client.mjs '{"endpoint": "opc.tcp://127.0.0.1:4840/bessgw", "pki_dir": "...",
//          "user": "operator", "password": "...", "gateway": "gw-a", "unit": "m1",
//          "p_kw": 120.0, "q_kvar": 0.0, "command_id": "node-1", "timeout_s": 30}'
// With "security": "None" and no "user", it connects as a first-time visitor does: the None policy,
// an anonymous session (node-opcua still sends its application certificate), and SetPower / a setpoint
// write are expected to be refused — their status codes are reported, not treated as failures.
// Exit code 0: everything worked; 2: a step failed (the JSON says which, e.g. the certificate was
// rejected and must be trusted on the gateway); 3: the overall time bound was hit.

import {
    AttributeIds,
    BrowseDirection,
    DataType,
    MessageSecurityMode,
    OPCUACertificateManager,
    OPCUAClient,
    SecurityPolicy,
    TimestampsToReturn,
    UserTokenType,
    makeBrowsePath,
} from "node-opcua";

const NAMESPACE_URI = "urn:bessgw:opcua";
const args = JSON.parse(process.argv[2] ?? "{}");
const report = { ok: false, stage: "start" };

function finish(code) {
    process.stdout.write(JSON.stringify(report) + "\n");
    process.exit(code);
}

// every wait is bounded: the whole run, whatever node-opcua does internally
const overall = setTimeout(() => {
    report.error = `timed out after ${args.timeout_s ?? 30} s in stage ${report.stage}`;
    finish(3);
}, (args.timeout_s ?? 30) * 1000);

async function browseNames(session, nodeId) {
    const result = await session.browse({
        nodeId,
        browseDirection: BrowseDirection.Forward,
        referenceTypeId: "HierarchicalReferences",
        includeSubtypes: true,
        resultMask: 0x3f,
    });
    if (!result.statusCode.isGood()) {
        throw new Error(`browse ${nodeId} failed: ${result.statusCode.toString()}`);
    }
    return result.references.map((ref) => ({
        name: ref.browseName.name,
        ns: ref.browseName.namespaceIndex,
        nodeId: ref.nodeId.toString(),
    }));
}

function child(children, ns, name) {
    const found = children.find((c) => c.ns === ns && c.name === name);
    if (!found) {
        throw new Error(`no child ${ns}:${name} among ${children.map((c) => `${c.ns}:${c.name}`).join(", ")}`);
    }
    return found.nodeId;
}

// resolves true once ready() holds, false after SUBSCRIPTION_WAIT_MS (polled; the overall timer still applies)
const SUBSCRIPTION_WAIT_MS = 10000;
async function waitFor(ready) {
    const deadline = Date.now() + SUBSCRIPTION_WAIT_MS;
    while (!ready()) {
        if (Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
}

async function main() {
    // the client's own application certificate, created on first use under pki_dir/own
    const certificateManager = new OPCUACertificateManager({
        rootFolder: args.pki_dir,
        // a test against a server generated seconds ago: accept its certificate; a real site compares
        // the thumbprint first (docs/opcua.md)
        automaticallyAcceptUnknownCertificate: true,
    });
    await certificateManager.initialize();
    const unsecured = args.security === "None";
    const anonymous = !args.user;
    const client = OPCUAClient.create({
        applicationName: "bessgw-interop-node-opcua",
        applicationUri: "urn:bessgw-interop:node-opcua",
        clientCertificateManager: certificateManager,
        securityMode: unsecured ? MessageSecurityMode.None : MessageSecurityMode.SignAndEncrypt,
        securityPolicy: unsecured ? SecurityPolicy.None : SecurityPolicy.Basic256Sha256,
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 500 },
        requestedSessionTimeout: 20000,
        defaultSecureTokenLifetime: 60000,
    });
    report.stage = "connect";
    await client.connect(args.endpoint);
    let session;
    try {
        report.stage = "session";
        session = anonymous
            ? await client.createSession()
            : await client.createSession({ type: UserTokenType.UserName, userName: args.user, password: args.password });
        report.security = unsecured ? { policy: "None", mode: "None" } : { policy: "Basic256Sha256", mode: "SignAndEncrypt" };
        report.user = anonymous ? "anonymous" : args.user;

        report.stage = "namespace";
        const namespaces = await session.readNamespaceArray();
        const ns = namespaces.indexOf(NAMESPACE_URI);
        if (ns < 0) throw new Error(`namespace ${NAMESPACE_URI} not served: ${namespaces.join(", ")}`);
        report.namespace_index = ns;

        report.stage = "browse";
        const objects = await browseNames(session, "ns=0;i=85");
        const campus = child(objects, ns, "Campus");
        const campusChildren = await browseNames(session, campus);
        report.campus_children = campusChildren.map((c) => c.name).sort();
        const gateways = await browseNames(session, child(campusChildren, ns, "Gateways"));
        report.gateways = gateways.map((c) => c.name).sort();
        const gatewayChildren = await browseNames(session, child(gateways, ns, args.gateway));
        const units = await browseNames(session, child(gatewayChildren, ns, "Units"));
        report.units = units.map((c) => c.name).sort();
        const unitId = child(units, ns, args.unit);
        const unitChildren = await browseNames(session, unitId);
        report.unit_children = unitChildren.map((c) => c.name).sort();

        // the same unit once more by a translated browse path, the way many SCADA tools address nodes
        const path = makeBrowsePath("ObjectsFolder",
            `/${ns}:Campus/${ns}:Gateways/${ns}:${args.gateway}/${ns}:Units/${ns}:${args.unit}/${ns}:SocPct`);
        const translated = await session.translateBrowsePath(path);
        report.translated_status = translated.statusCode.name;

        report.stage = "read";
        const socNode = child(unitChildren, ns, "SocPct");
        const soc = await session.read({ nodeId: socNode, attributeId: AttributeIds.Value });
        report.soc = {
            node_id: socNode,
            value: soc.value.value,
            data_type: DataType[soc.value.dataType],
            status: soc.statusCode.name,
            source_timestamp: soc.sourceTimestamp ? soc.sourceTimestamp.toISOString() : null,
        };
        const socEu = await browseNames(session, socNode);
        const euNode = socEu.find((c) => c.name === "EngineeringUnits");
        if (euNode) {
            const eu = await session.read({ nodeId: euNode.nodeId, attributeId: AttributeIds.Value });
            report.soc.engineering_units = eu.value.value ? eu.value.value.displayName.text : null;
        }

        // what this session may do with a setpoint: UserAccessLevel is per user (CurrentWrite = bit 1)
        const setpointNode = child(unitChildren, ns, "PowerSetpointKw");
        const [accessLevel, userAccessLevel] = await session.read([
            { nodeId: setpointNode, attributeId: AttributeIds.AccessLevel },
            { nodeId: setpointNode, attributeId: AttributeIds.UserAccessLevel },
        ]);
        report.setpoint_access = { access_level: accessLevel.value.value, user_access_level: userAccessLevel.value.value };

        if (anonymous) {
            report.stage = "write";
            const [written] = await session.write([{
                nodeId: setpointNode,
                attributeId: AttributeIds.Value,
                value: { value: { dataType: DataType.Double, value: args.p_kw } },
            }]);
            report.write_status = written.name;
        }

        // a subscription on the unit's PowerKw, as SCADA keeps one open on everything it shows
        report.stage = "subscribe";
        const subscription = await session.createSubscription2({
            requestedPublishingInterval: 100,
            requestedLifetimeCount: 600,
            requestedMaxKeepAliveCount: 20,
            maxNotificationsPerPublish: 100,
            publishingEnabled: true,
            priority: 10,
        });
        const notifications = [];
        const item = await subscription.monitor(
            { nodeId: child(unitChildren, ns, "PowerKw"), attributeId: AttributeIds.Value },
            { samplingInterval: 100, discardOldest: true, queueSize: 10 },
            TimestampsToReturn.Both,
        );
        item.on("changed", (dataValue) => notifications.push({
            value: dataValue.value.value,
            status: dataValue.statusCode.name,
            source_timestamp: dataValue.sourceTimestamp ? dataValue.sourceTimestamp.toISOString() : null,
        }));
        report.subscription = { first: await waitFor(() => notifications.length > 0) ? notifications[0] : null };

        report.stage = "call";
        const result = await session.call({
            objectId: unitId,
            methodId: child(unitChildren, ns, "SetPower"),
            inputArguments: [
                { dataType: DataType.Double, value: args.p_kw },
                { dataType: DataType.Double, value: args.q_kvar ?? 0.0 },
                { dataType: DataType.String, value: args.command_id },
            ],
        });
        report.set_power = {
            status: result.statusCode.name,
            outputs: (result.outputArguments ?? []).map((v) => v.value),
        };
        if (!result.statusCode.isGood() && !anonymous) throw new Error(`SetPower returned ${result.statusCode.name}`);
        if (!anonymous) {
            // the commanded power reaches the device, its telemetry, and this subscription
            report.stage = "notification";
            const reached = await waitFor(() => notifications.some((n) => n.value === args.p_kw));
            report.subscription.reached_p_kw = reached;
            report.subscription.values = notifications.map((n) => n.value);
        }
        await subscription.terminate().catch(() => undefined);
        report.stage = "done";
        report.ok = true;
    } finally {
        if (session) await session.close().catch(() => undefined);
        await client.disconnect().catch(() => undefined);
    }
}

main().then(
    () => {
        clearTimeout(overall);
        finish(report.ok ? 0 : 2);
    },
    (err) => {
        clearTimeout(overall);
        report.error = String(err && err.message ? err.message : err);
        finish(2);
    },
);
