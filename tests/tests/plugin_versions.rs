//! Plugin versions: a plugin says its version and the SDK's it was built with, which
//! `wharf plugin ls` and the API show; a plugin built before that (message version 1, no
//! version or log symbols) still loads and works.

use std::os::unix::fs::PermissionsExt;
use wharf_tests::{Host, PluginDir};

/// A network driver `old` as a plugin of message version 1 writes it, in C: its plans
/// carry every undo; `create_network` makes a bridge, `delete_network` deletes it.
const OLD_PLUGIN: &str = r#"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
struct buffer { uint8_t *ptr; size_t len; size_t cap; };
struct entry { const char *name; uint32_t kind; };
typedef int32_t (*call_fn)(void *, size_t, const uint8_t *, size_t, struct buffer *);
typedef void (*free_fn)(struct buffer);
typedef void (*destroy_fn)(void *);
struct table {
    uint32_t abi_version; uint32_t size; void *instance; size_t driver_count;
    const struct entry *drivers; call_fn call; free_fn free; destroy_fn destroy;
};
static const char *LINK = "{\"netns\":\"host\",\"link\":{\"name\":\"old0\",\"kind\":\"bridge\",\"up\":true}}";
static int32_t call(void *instance, size_t driver, const uint8_t *req, size_t len, struct buffer *out) {
    char *text = strndup((const char *)req, len);
    char *answer = malloc(512);
    if (strstr(text, "\"method\":\"validate\"")) strcpy(answer, "null");
    else if (strstr(text, "\"method\":\"capabilities\"")) strcpy(answer, "{}");
    else if (strstr(text, "\"method\":\"create_network\""))
        snprintf(answer, 512, "{\"plan\":{\"steps\":[{\"do\":{\"link_add\":%s},"
                 "\"undo\":{\"link_del\":{\"netns\":\"host\",\"name\":\"old0\"}}}]},\"state\":{\"v\":1}}", LINK);
    else if (strstr(text, "\"method\":\"delete_network\""))
        snprintf(answer, 512, "{\"plan\":{\"steps\":[{\"do\":{\"link_del\":{\"netns\":\"host\",\"name\":\"old0\"}},"
                 "\"undo\":{\"link_add\":%s}}]}}", LINK);
    else strcpy(answer, "{\"plan\":{\"steps\":[]}}");
    free(text);
    out->ptr = (uint8_t *)answer; out->len = strlen(answer); out->cap = 512;
    return 0;
}
static void release(struct buffer b) { free(b.ptr); }
static void destroy(void *instance) {}
static const struct entry drivers[] = { { "old", 1 } };
static struct table t = { 1, sizeof(struct table), 0, 1, drivers, call, release, destroy };
const struct table *wharf_plugin_v1(void) { return &t; }
"#;

#[test]
fn plugins_say_their_versions_and_an_older_plugin_still_works() {
    wharf_tests::require_root!();
    let plugins = PluginDir::with(&["wharf_example_driver"]);
    let dir = std::path::Path::new(plugins.arg());
    let src = dir.join("old.c");
    std::fs::write(&src, OLD_PLUGIN).unwrap();
    let so = dir.join("libold.so");
    wharf_tests::ok("cc", &["-shared", "-fPIC", "-o", so.to_str().unwrap(), src.to_str().unwrap()]);
    std::fs::remove_file(&src).unwrap();
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();

    let h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    let sdk = wharf_sdk::abi::SDK_VERSION;
    let listed = h.wharf_ok(&["plugin", "ls"]);
    let row = |name: &str| {
        listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{listed}"))
            .to_string()
    };
    let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(row("ptp"))[1..5], ["network", sdk, sdk, "1"], "{listed}");
    assert_eq!(words(row("old"))[1..5], ["network", "-", "-", "1"], "{listed}");
    let (status, body) = h.api("GET", "/wharf/plugins", "");
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ptp = all.as_array().unwrap().iter().find(|p| p["Name"] == "ptp").unwrap();
    assert_eq!(ptp["SdkVersion"], sdk);

    h.wharf_ok(&["network", "create", "-d", "old", "--subnet", "10.71.0.0/24", "o"]);
    assert!(h.in_host_ok(&["ip", "-o", "link", "show"]).contains("old0"));
    h.wharf_ok(&["network", "rm", "o"]);
    assert!(!h.in_host_ok(&["ip", "-o", "link", "show"]).contains("old0"));
}
