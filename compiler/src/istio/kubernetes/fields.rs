//! The fields Kubernetes defines for the parts of the imported kinds the import reads, so that
//! a field outside them is reported (W0202) as kubectl's strict field validation would.
//! Fields nested deeper than these (volumes, probes, env, ...) are not checked.

/// `ObjectMeta`.
pub(super) const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// `ServiceSpec`: the fields read; the others are listed by `service::SERVICE_SETTINGS`.
/// `ipFamilies` and `ipFamilyPolicy` only describe the families of `clusterIPs`, which is read.
pub(super) const SERVICE_SPEC_READ: &[&str] = &[
    "ports",
    "selector",
    "clusterIP",
    "clusterIPs",
    "ipFamilies",
    "ipFamilyPolicy",
];

/// `ServicePort`.
pub(super) const SERVICE_PORT: &[&str] = &[
    "name",
    "protocol",
    "appProtocol",
    "port",
    "targetPort",
    "nodePort",
];

/// `EndpointPort` (of an EndpointSlice or an Endpoints subset).
pub(super) const ENDPOINT_PORT: &[&str] = &["name", "protocol", "appProtocol", "port"];

/// `discovery.k8s.io/v1 Endpoint`.
pub(super) const SLICE_ENDPOINT: &[&str] = &[
    "addresses",
    "conditions",
    "hostname",
    "targetRef",
    "deprecatedTopology",
    "nodeName",
    "zone",
    "hints",
];

/// `EndpointConditions`.
pub(super) const CONDITIONS: &[&str] = &["ready", "serving", "terminating"];

/// `EndpointSubset` of a `v1 Endpoints`.
pub(super) const SUBSET: &[&str] = &["addresses", "notReadyAddresses", "ports"];

/// `EndpointAddress`.
pub(super) const ENDPOINT_ADDRESS: &[&str] = &["ip", "hostname", "nodeName", "targetRef"];

/// `ObjectReference`.
pub(super) const OBJECT_REFERENCE: &[&str] = &[
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
];

/// `PodTemplateSpec`.
pub(super) const POD_TEMPLATE: &[&str] = &["metadata", "spec"];

/// `PodSpec`.
pub(super) const POD_SPEC: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
    "hostnameOverride",
];

/// `Container`.
pub(super) const CONTAINER: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];

/// `ContainerPort`.
pub(super) const CONTAINER_PORT: &[&str] =
    &["containerPort", "hostPort", "hostIP", "name", "protocol"];

/// The `spec` of each workload controller (`apps/v1`).
pub(super) fn controller_spec(kind: &str) -> &'static [&'static str] {
    match kind {
        "Deployment" => &[
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        ],
        "StatefulSet" => &[
            "replicas",
            "selector",
            "template",
            "volumeClaimTemplates",
            "serviceName",
            "podManagementPolicy",
            "updateStrategy",
            "revisionHistoryLimit",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
        ],
        "DaemonSet" => &[
            "selector",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ],
        _ => &["replicas", "minReadySeconds", "selector", "template"],
    }
}
