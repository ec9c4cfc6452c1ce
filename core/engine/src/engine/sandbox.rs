//! Sandbox operations: create, remove. A sandbox is a network namespace, either made by
//! wharf (a named namespace under the netns directory) or handed over by a runtime.

use super::{new_id, now, valid_name, Author, Engine};
use crate::error::{Error, Result};
use crate::model::{DnsConfig, Sandbox};
use crate::store::Table;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wharf_sdk::{Op, Plan, Step};

impl Engine {
    /// Create a sandbox: a new persistent named namespace, or register `netns` (a path
    /// such as `/proc/PID/ns/net`) a runtime made. The namespace and the sandbox's
    /// `resolv.conf` are made by one journaled plan, so a crash leaves no trace.
    pub fn sandbox_create(&self, name: &str, netns: Option<&str>, labels: BTreeMap<String, String>) -> Result<Sandbox> {
        self.sandbox_create_with_dns(name, netns, labels, DnsConfig::default())
    }

    /// [`Engine::sandbox_create`], with the sandbox's own resolver settings.
    pub fn sandbox_create_with_dns(
        &self,
        name: &str,
        netns: Option<&str>,
        labels: BTreeMap<String, String>,
        dns: DnsConfig,
    ) -> Result<Sandbox> {
        let mut state = self.lock();
        if !valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid sandbox name {name:?}: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            )));
        }
        super::dns::check_config(name, &dns)?;
        if state.sandbox_named(name) {
            return Err(Error::Conflict(format!("sandbox with name {name} already exists")));
        }
        let mut plan = Plan::new();
        let (path, owned) = match netns {
            Some(p) => {
                self.exec.check_netns(Path::new(p)).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "sandbox {name}: Netns {p} cannot be a sandbox: {}",
                        crate::executor::report(&e)
                    ))
                })?;
                (p.to_string(), false)
            }
            None => {
                let path = self.settings.netns_dir.join(name);
                if self.exec.path_exists(&path) {
                    // Someone else's namespace (or file): never adopted, never deleted.
                    return Err(Error::Conflict(format!(
                        "sandbox {name}: {} exists and was not made by wharf; remove it or choose another name",
                        path.display()
                    )));
                }
                let path = path.display().to_string();
                plan.push(Step::new(Op::NetnsCreate { path: path.clone() }, Op::NetnsRemove { path: path.clone() }));
                (path, true)
            }
        };
        let dir = self.etc_dir(name);
        let conf = format!("{dir}/resolv.conf");
        plan.push(Step::dir_create(&dir, None, None, None));
        plan.push(Step::new(
            Op::FileWrite { path: conf.clone(), contents: self.first_resolv_conf(&dns) },
            Op::FileRemove { path: conf },
        ));
        let plan = super::adopt_existing_directories(&*self.exec, plan);
        let sandbox = Sandbox { id: new_id(), name: name.to_string(), netns: path, owned, created: now(), labels, dns };
        self.apply(Author::Core, &format!("sandbox {name}"), &plan, |t| {
            t.put(Table::Sandboxes, &sandbox.id, &sandbox)
        })?;
        state.put_sandbox(Arc::new(sandbox.clone()));
        tracing::info!(sandbox = %sandbox.name, netns = %sandbox.netns, "sandbox created");
        Ok(sandbox)
    }

    /// `/etc/netns/NAME`: where `ip netns exec NAME` finds the sandbox's `resolv.conf`.
    pub(super) fn etc_dir(&self, name: &str) -> String {
        self.settings.netns_etc_dir.join(name).display().to_string()
    }

    /// Remove a sandbox. While it is connected this is refused unless `force`, which
    /// disconnects it from every network first. Its files and namespace go in one journaled
    /// removal that a crash cannot leave half done.
    pub fn sandbox_remove(&self, key: &str, force: bool) -> Result<()> {
        let mut state = self.lock();
        let sandbox = state.sandbox(key)?.clone();
        let endpoints: Vec<_> = state.endpoints_of_sandbox(&sandbox.id).cloned().collect();
        if !endpoints.is_empty() && !force {
            return Err(Error::Forbidden(format!(
                "sandbox {} is connected to {} network(s); disconnect it first or use --force",
                sandbox.name,
                endpoints.len()
            )));
        }
        for e in &endpoints {
            self.disconnect_locked(&mut state, e, force)?;
        }
        self.dns_forget(&sandbox);
        let sysctls = super::sysctls::records_of(&self.store, &sandbox.netns)?;
        let mut plan = Plan::new();
        plan.push(Step::new(Op::DirRemove { path: self.etc_dir(&sandbox.name) }, Op::Noop));
        if sandbox.owned {
            plan.push(Step::new(Op::NetnsRemove { path: sandbox.netns.clone() }, Op::Noop));
        }
        self.apply_removal(
            Author::Core,
            &format!("sandbox {}", sandbox.name),
            &plan,
            |t| {
                for key in &sysctls {
                    t.delete(Table::Sysctls, key)?;
                }
                t.delete(Table::Sandboxes, &sandbox.id)
            },
            |t| t.put(Table::Sandboxes, &sandbox.id, &sandbox),
        )?;
        state.remove_sandbox(&sandbox.id);
        tracing::info!(sandbox = %sandbox.name, "sandbox removed");
        Ok(())
    }
}
