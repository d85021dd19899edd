//! Issue 14, "Fleet": the Kubernetes manifests in deploy/kubernetes are checked against the
//! Kubernetes schemas (`kubernetes-validate`, from PyPI, in a venv under ~/.cache/guard), and
//! the ConfigMap's policy is guard's default policy plus the `kubernetes:` section and passes
//! guard's own validator. No root needed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use guard_tests::{TempDir, default_policy_value, guard_bin};
use serde_json::{Value, json};

/// kubernetes-validate's release (it bundles the schemas of every Kubernetes version).
const VALIDATOR: &str = "kubernetes-validate==1.37.0";

fn deploy_dir() -> PathBuf {
    guard_tests::source_path("deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(deploy_dir())
        .expect("reading deploy/kubernetes")
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The validator in its venv, installed on first use; `Err(why)` when pip cannot get it.
fn kubernetes_validate() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/guard/kubernetes-validate-venv");
    let bin = venv.join("bin/kubernetes-validate");
    if bin.exists() {
        return Ok(bin);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|err| format!("{what}: {err}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", VALIDATOR]), "pip install")?;
    if bin.exists() { Ok(bin) } else { Err(format!("{} missing after pip install", bin.display())) }
}

fn validate(validator: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(validator).args(["--strict", "--quiet"]).arg(file).output().expect("kubernetes-validate");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas() {
    let validator = match kubernetes_validate() {
        Ok(bin) => bin,
        Err(why) => {
            println!("SKIPPED the_manifests_pass_the_kubernetes_schemas: cannot install {VALIDATOR}: {why}");
            return;
        }
    };
    let files = manifests();
    let names: Vec<String> = files.iter().filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned())).collect();
    for wanted in ["configmap.yaml", "daemonset.yaml", "fluent-bit.yaml", "namespace.yaml", "serviceaccount.yaml"] {
        assert!(names.iter().any(|n| n == wanted), "deploy/kubernetes has no {wanted}: {names:?}");
    }
    for file in &files {
        let (ok, output) = validate(&validator, file);
        assert!(ok, "{} does not validate:\n{output}", file.display());
    }
    // The validator refuses what is wrong (strict: unknown fields too), so passing means something.
    let scratch = TempDir::new("fleet");
    let text = fs::read_to_string(deploy_dir().join("daemonset.yaml")).expect("daemonset.yaml");
    let bad = scratch.path().join("daemonset-typo.yaml");
    fs::write(&bad, text.replace("hostPID: true", "hostPid: true")).expect("writing");
    let (ok, output) = validate(&validator, &bad);
    assert!(!ok && output.contains("hostPid"), "a misspelt field passed:\n{output}");
}

#[test]
fn the_daemonset_has_the_mounts_privileges_and_metrics_it_needs() {
    let ds = yaml(&deploy_dir().join("daemonset.yaml"));
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["hostPID"], true);
    let guard = &spec["containers"][0];
    assert_eq!(guard["securityContext"]["privileged"], true);
    let args: Vec<&str> = guard["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let arg = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied();
    let metrics = arg("--metrics").expect("--metrics");
    let port = metrics.rsplit(':').next().expect("port");
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], port);
    assert_eq!(guard["ports"][0]["containerPort"].as_u64().map(|p| p.to_string()).as_deref(), Some(port));
    // Every host path guard reads or writes is mounted where the arguments say.
    let mounts: Vec<(&str, &str)> = guard["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["mountPath"].as_str()?, m["name"].as_str()?)))
        .collect();
    let host_path =
        |volume: &str| spec["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == volume).cloned();
    for (path, host) in [
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/sys/fs/bpf", "/sys/fs/bpf"),
        ("/sys/kernel/btf", "/sys/kernel/btf"),
        ("/sys/kernel/tracing", "/sys/kernel/tracing"),
        ("/var/log/guard", "/var/log/guard"),
        // scope.unix learns the host's runtime sockets' inodes through it.
        ("/run", "/run"),
    ] {
        let (_, volume) = mounts.iter().find(|(p, _)| *p == path).unwrap_or_else(|| panic!("no mount at {path}"));
        let volume = host_path(volume).unwrap_or_else(|| panic!("no volume {volume}"));
        assert_eq!(volume["hostPath"]["path"], host, "{volume}");
    }
    let policy = arg("--policy").expect("--policy");
    let (dir, _) = mounts.iter().find(|(p, _)| policy.starts_with(*p)).expect("the policy's directory is mounted");
    let volume = host_path(mounts.iter().find(|(p, _)| p == dir).map(|(_, v)| *v).unwrap_or_default());
    assert_eq!(volume.expect("policy volume")["configMap"]["name"], "guard-policy");
    assert!(arg("--audit").is_some_and(|a| a.starts_with("/var/log/guard/")));
    // Fluent Bit tails the very file guard writes.
    let shipper = fs::read_to_string(deploy_dir().join("fluent-bit.yaml")).expect("fluent-bit.yaml");
    assert!(shipper.contains(&format!("Path              {}", arg("--audit").unwrap_or_default())), "{shipper}");

    // And `guard run` takes these arguments (clap parses all of them before --help). The
    // metrics flag comes with the metrics work; a build without it says so.
    let help = Command::new(guard_bin()).args(["run", "--help"]).output().expect("guard run --help");
    if !String::from_utf8_lossy(&help.stdout).contains("--metrics") {
        println!(
            "SKIPPED part of the_daemonset_has_the_mounts_privileges_and_metrics_it_needs: this guard has no `run --metrics` yet"
        );
        return;
    }
    let out = Command::new(guard_bin()).arg("run").args(&args[1..]).arg("--help").output().expect("guard run");
    assert!(
        out.status.success(),
        "guard run refuses the DaemonSet's arguments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// configmap.yaml as it must be: its header, then the default policy and the kubernetes
/// section, indented into `data.policy.yaml`.
fn expected_configmap(default_policy: &str) -> String {
    let kube = "\n# Pods as sessions (deploy/kubernetes): every pod's cgroup below the kubelet's root is a\n\
                # session named pod-<UID>. kubepods.slice is the systemd cgroup driver's root (kubeadm's\n\
                # default); with the cgroupfs driver it is kubepods.\n\
                kubernetes:\n  enabled: true\n  root: kubepods.slice\n";
    let policy = format!("{}\n{kube}", default_policy.trim_end_matches('\n'));
    let body: String =
        policy.lines().map(|l| if l.trim().is_empty() { "\n".to_string() } else { format!("    {l}\n") }).collect();
    format!(
        "# guard's policy for the DaemonSet: the built-in default policy (`guard policy default`)\n\
         # plus the `kubernetes:` section at its end. tests/tests/fleet.rs checks both; after a change\n\
         # to the default policy, regenerate with GUARD_UPDATE_MANIFESTS=1 cargo test -p guard-tests --test fleet.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guard-policy\n  namespace: guard-system\n  labels:\n    \
         app.kubernetes.io/name: guard\ndata:\n  policy.yaml: |\n{body}"
    )
}

#[test]
fn the_configmap_policy_is_the_default_plus_kubernetes_and_validates() {
    let out = Command::new(guard_bin()).args(["policy", "default"]).output().expect("guard policy default");
    assert!(out.status.success());
    let default_text = String::from_utf8(out.stdout).expect("UTF-8");
    let path = deploy_dir().join("configmap.yaml");
    let expected = expected_configmap(&default_text);
    if std::env::var_os("GUARD_UPDATE_MANIFESTS").is_some() {
        fs::write(&path, &expected).expect("writing configmap.yaml");
    }
    let actual = fs::read_to_string(&path).expect("configmap.yaml");
    assert!(
        actual == expected,
        "configmap.yaml is not the default policy plus the kubernetes section; regenerate it with \
         GUARD_UPDATE_MANIFESTS=1 cargo test -p guard-tests --test fleet"
    );

    let configmap = yaml(&path);
    let text = configmap["data"]["policy.yaml"].as_str().expect("data.policy.yaml");
    // guard's own validator accepts it.
    let scratch = TempDir::new("fleet-policy");
    let file = scratch.path().join("policy.yaml");
    fs::write(&file, text).expect("writing the policy");
    let check = Command::new(guard_bin()).args(["policy", "check"]).arg(&file).output().expect("guard policy check");
    assert!(
        check.status.success(),
        "guard policy check refuses the ConfigMap's policy:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // And as data: the default policy, plus exactly the kubernetes section.
    let mut policy: Value = serde_saphyr::from_str(text).expect("the policy is YAML");
    let kube = policy.as_object_mut().and_then(|map| map.remove("kubernetes"));
    assert_eq!(kube, Some(json!({ "enabled": true, "root": "kubepods.slice" })));
    assert_eq!(policy, default_policy_value(), "the rest is the default policy");
}
