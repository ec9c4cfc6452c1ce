//! End-to-end: the wharf CLI as scripts and shells use it: completion scripts, `--format
//! json` as the docker CLI prints it, `-q`, name order, `exists`, filters, and errors
//! printed once.

use serde_json::Value;
use std::process::{Command, Output};
use wharf_tests::{target_dir, Host};

fn wharf(args: &[&str]) -> Output {
    Command::new(target_dir().join("wharf")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn completion_scripts_load_in_their_shells() {
    wharf_tests::require_root!();
    let bash = wharf(&["completion", "bash"]);
    assert!(bash.status.success());
    let script = std::env::temp_dir().join(wharf_tests::unique("wo-completion"));
    std::fs::write(&script, &bash.stdout).unwrap();
    let loaded =
        Command::new("bash").args(["-c", &format!("source {}; complete -p wharf", script.display())]).output().unwrap();
    let _ = std::fs::remove_file(&script);
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert!(text(&loaded.stdout).contains("wharf"), "{}", text(&loaded.stdout));
    assert!(text(&bash.stdout).contains("network") && text(&bash.stdout).contains("sandbox"));

    let zsh = text(&wharf(&["completion", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef wharf"), "{zsh}");
    let fish = text(&wharf(&["completion", "fish"]).stdout);
    assert!(fish.contains("complete -c wharf"), "{fish}");
    let bad = wharf(&["completion", "tcsh"]);
    assert!(!bad.status.success());
}

#[test]
fn an_unknown_format_is_an_error_not_a_table() {
    wharf_tests::require_root!();
    for args in [&["network", "ls", "--format", "yaml"][..], &["version", "--format", "Json2"][..]] {
        let out = wharf(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("invalid value") && err.contains("table") && err.contains("json"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// Every line of `out` as a JSON object.
fn lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))).collect()
}

fn names(objects: &[Value]) -> Vec<String> {
    objects.iter().map(|o| o["Name"].as_str().unwrap().to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn lists_are_json_lines_in_name_order_and_quiet_prints_ids() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.68.1.0/24", "--label", "team=red", "zeta"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.68.2.0/24", "alpha"]);
    for v in ["vz", "va"] {
        h.wharf_ok(&["volume", "create", "--label", "k=v", v]);
    }
    for sb in ["sz", "sa"] {
        h.wharf_ok(&["sandbox", "create", "--label", "role=web", sb]);
    }

    let networks = lines(&h.wharf_ok(&["network", "ls", "--format", "json"]));
    assert_eq!(names(&networks), sorted(names(&networks)));
    assert_eq!(names(&networks), ["alpha", "bridge", "host", "none", "zeta"]);
    let zeta = &networks[4];
    assert_eq!(zeta["Driver"], "bridge");
    assert_eq!(zeta["Labels"], "team=red");
    assert_eq!(
        (zeta["IPv4"].as_str(), zeta["IPv6"].as_str(), zeta["Internal"].as_str()),
        (Some("true"), Some("false"), Some("false"))
    );
    assert_eq!(zeta["ID"].as_str().unwrap().len(), 12);
    let ids: Vec<String> = networks.iter().map(|n| n["ID"].as_str().unwrap().to_string()).collect();
    assert_eq!(h.wharf_ok(&["network", "ls", "-q"]).lines().collect::<Vec<_>>(), ids);
    let table: Vec<String> = h
        .wharf_ok(&["network", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(table, names(&networks), "the table is in name order too");

    let volumes = lines(&h.wharf_ok(&["volume", "ls", "--format", "json"]));
    assert_eq!(names(&volumes), ["va", "vz"]);
    assert_eq!((volumes[0]["Driver"].as_str(), volumes[0]["Labels"].as_str()), (Some("local"), Some("k=v")));
    let inspected: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", "va"])).unwrap();
    assert_eq!(volumes[0]["Mountpoint"], inspected[0]["Mountpoint"]);
    assert_eq!(h.wharf_ok(&["volume", "ls", "-q"]), "va\nvz\n", "a volume's id is its name");

    let sandboxes = lines(&h.wharf_ok(&["sandbox", "ls", "--format", "json"]));
    assert_eq!(names(&sandboxes), ["sa", "sz"]);
    let quiet = h.wharf_ok(&["sandbox", "ls", "-q"]);
    let ids: Vec<&str> = sandboxes.iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), ids, "-q prints ids");
    assert!(ids.iter().all(|i| i.len() == 12 && i.bytes().all(|b| b.is_ascii_hexdigit())), "{ids:?}");
    let full = h.wharf_ok(&["sandbox", "ls", "-q", "--no-trunc"]);
    assert!(full.lines().all(|i| i.len() == 64), "{full}");
}

#[test]
fn sandbox_filters_are_applied() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.68.3.0/24", "front"]);
    h.wharf_ok(&["sandbox", "create", "--label", "role=web", "web1"]);
    h.wharf_ok(&["sandbox", "create", "--label", "role=db", "db1"]);
    h.wharf_ok(&["network", "connect", "front", "web1"]);
    let listed = |filter: &str| names(&lines(&h.wharf_ok(&["sandbox", "ls", "--format", "json", "--filter", filter])));
    assert_eq!(listed("label=role=web"), ["web1"]);
    assert_eq!(listed("name=db"), ["db1"]);
    assert_eq!(listed("network=front"), ["web1"]);
    assert!(listed("name=nobody").is_empty());
    let id = h.wharf_ok(&["sandbox", "ls", "-q", "--filter", "name=db1"]);
    assert_eq!(listed(&format!("id={}", id.trim())), ["db1"]);
    let err = h.wharf_err(&["sandbox", "ls", "--filter", "colour=blue"]);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn exists_answers_with_its_exit_code_alone() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.68.4.0/24", "here"]);
    h.wharf_ok(&["volume", "create", "vol"]);
    h.wharf_ok(&["sandbox", "create", "sb"]);
    for (what, name) in [("network", "here"), ("volume", "vol"), ("sandbox", "sb")] {
        let yes = h.wharf(&[what, "exists", name]);
        assert_eq!(yes.status.code(), Some(0), "{what} {name}: {}", text(&yes.stderr));
        let no = h.wharf(&[what, "exists", "nowhere"]);
        assert_eq!(no.status.code(), Some(1), "{what}: {}", text(&no.stderr));
        for out in [&yes, &no] {
            assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{what}: no output");
        }
    }
    let down = wharf(&["-H", "/nonexistent/wharf.sock", "network", "exists", "here"]);
    assert!(down.status.code() != Some(0) && down.status.code() != Some(1), "cannot tell is neither yes nor no");
    assert!(text(&down.stderr).contains("is wharfd running?"), "{}", text(&down.stderr));
}

#[test]
fn each_error_is_printed_once() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.68.5.0/24", "gone"]);
    let one = h.wharf(&["network", "rm", "nosuch"]);
    assert_eq!(one.status.code(), Some(1));
    let err = text(&one.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");

    let mixed = h.wharf(&["network", "rm", "nosuch1", "gone", "nosuch2"]);
    assert_eq!(mixed.status.code(), Some(1));
    assert_eq!(text(&mixed.stdout), "gone\n");
    let err = text(&mixed.stderr);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.lines().next().unwrap().contains("nosuch1") && err.lines().nth(1).unwrap().contains("nosuch2"),
        "{err}"
    );
}
