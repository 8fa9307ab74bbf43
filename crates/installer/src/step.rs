//! The 22 steps of an install. Their names are part of the interface: they appear in the
//! checkpoint, in progress output, in JSON events and in `--stop-after`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The five phases the steps are grouped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Servers ordered, booted into Talos maintenance mode.
    Infrastructure,
    /// Talos configured, Kubernetes bootstrapped.
    TalosBootstrap,
    /// Cilium, local-path-provisioner, Argo CD.
    PlatformStack,
    /// The app-of-apps synced.
    GitOps,
    /// Storage, kubeconfig, summary.
    PostInstall,
}

macro_rules! steps {
    ($($(#[$doc:meta])* $name:ident => $kebab:literal, $phase:ident;)*) => {
        /// One step of the install, in execution order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Step {
            $($(#[$doc])* $name,)*
        }

        impl Step {
            /// Every step, in order.
            pub const ALL: [Step; 22] = [$(Step::$name,)*];

            /// The step's name (`WaitingServersReady`).
            pub fn name(self) -> &'static str {
                match self { $(Step::$name => stringify!($name),)* }
            }

            /// The kebab-case form accepted by `--stop-after` (`waiting-servers-ready`).
            pub fn kebab(self) -> &'static str {
                match self { $(Step::$name => $kebab,)* }
            }

            /// The phase the step belongs to.
            pub fn phase(self) -> Phase {
                match self { $(Step::$name => Phase::$phase,)* }
            }
        }
    };
}

steps! {
    /// Key, project, plans, stock, flags and cost checked; the site chosen. Orders nothing.
    ValidatingPrerequisites => "validating-prerequisites", Infrastructure;
    /// Servers ordered (or adopted) with an iPXE boot into Talos.
    CreatingServers => "creating-servers", Infrastructure;
    /// Servers deployed, primary IPv4 known.
    WaitingServersReady => "waiting-servers-ready", Infrastructure;
    /// Every server set to boot Talos over iPXE (reinstalled if it was not).
    BootingTalos => "booting-talos", Infrastructure;
    /// Every node's Talos API answers in maintenance mode.
    WaitingTalosMaintenance => "waiting-talos-maintenance", Infrastructure;
    /// Talos secrets and machine configs generated.
    GeneratingConfigs => "generating-configs", TalosBootstrap;
    /// Control-plane configs applied.
    ApplyingCPConfig => "applying-cp-config", TalosBootstrap;
    /// Control planes installed Talos and rebooted.
    WaitingCPInstall => "waiting-cp-install", TalosBootstrap;
    /// etcd bootstrapped on the first control plane.
    Bootstrapping => "bootstrapping", TalosBootstrap;
    /// The Kubernetes API answers.
    WaitingKubernetes => "waiting-kubernetes", TalosBootstrap;
    /// Worker configs applied.
    ApplyingWorkerConfig => "applying-worker-config", TalosBootstrap;
    /// Workers joined the cluster.
    WaitingWorkerJoin => "waiting-worker-join", TalosBootstrap;
    /// Cilium installed; every node Ready.
    DeployingCilium => "deploying-cilium", PlatformStack;
    /// Namespaces and credentials the platform needs.
    DeployingBootstrapResources => "deploying-bootstrap-resources", PlatformStack;
    /// local-path-provisioner installed as the bootstrap StorageClass.
    DeployingLocalPathProvisioner => "deploying-local-path-provisioner", PlatformStack;
    /// Argo CD installed.
    DeployingArgoCD => "deploying-argocd", PlatformStack;
    /// Argo CD ready.
    WaitingArgoCDReady => "waiting-argocd-ready", GitOps;
    /// The app-of-apps applied.
    ApplyingAppOfApps => "applying-app-of-apps", GitOps;
    /// Every Application synced and healthy.
    WaitingGitOpsSync => "waiting-gitops-sync", GitOps;
    /// Mayastor pools and the default StorageClass.
    ConfiguringStorage => "configuring-storage", PostInstall;
    /// kubeconfig and talosconfig merged for the user.
    ConfiguringKubeconfig => "configuring-kubeconfig", PostInstall;
    /// The summary.
    Complete => "complete", PostInstall;
}

impl Step {
    /// 1-based position (`WaitingServersReady` is 3).
    pub fn number(self) -> usize {
        Step::ALL
            .iter()
            .position(|s| *s == self)
            .map_or(0, |i| i + 1)
    }

    /// The step after this one, if any.
    pub fn next(self) -> Option<Step> {
        Step::ALL.get(self.number()).copied()
    }

    /// The first step.
    pub fn first() -> Step {
        Step::ALL[0]
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a string that names no step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step '{given}': expected one of {}", Step::ALL.iter().map(|s| s.kebab()).collect::<Vec<_>>().join(", "))]
pub struct UnknownStep {
    /// What was given.
    pub given: String,
}

impl FromStr for Step {
    type Err = UnknownStep;

    /// Accepts the kebab-case form (`waiting-talos-maintenance`), the step's own name
    /// (`WaitingTalosMaintenance`) or the name in any case, with `_` or `-` separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        Step::ALL
            .iter()
            .copied()
            .find(|step| step.name().to_lowercase() == wanted)
            .ok_or_else(|| UnknownStep {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_22_steps_in_design_order() {
        let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "ValidatingPrerequisites",
                "CreatingServers",
                "WaitingServersReady",
                "BootingTalos",
                "WaitingTalosMaintenance",
                "GeneratingConfigs",
                "ApplyingCPConfig",
                "WaitingCPInstall",
                "Bootstrapping",
                "WaitingKubernetes",
                "ApplyingWorkerConfig",
                "WaitingWorkerJoin",
                "DeployingCilium",
                "DeployingBootstrapResources",
                "DeployingLocalPathProvisioner",
                "DeployingArgoCD",
                "WaitingArgoCDReady",
                "ApplyingAppOfApps",
                "WaitingGitOpsSync",
                "ConfiguringStorage",
                "ConfiguringKubeconfig",
                "Complete",
            ]
        );
        assert_eq!(Step::WaitingTalosMaintenance.number(), 5);
        assert_eq!(Step::Complete.next(), None);
    }

    #[test]
    fn parses_kebab_and_own_names() {
        for step in Step::ALL {
            assert_eq!(step.kebab().parse::<Step>(), Ok(step));
            assert_eq!(step.name().parse::<Step>(), Ok(step));
        }
        assert_eq!(
            "waiting-talos-maintenance".parse::<Step>(),
            Ok(Step::WaitingTalosMaintenance)
        );
        assert_eq!(
            "deploying-argocd".parse::<Step>(),
            Ok(Step::DeployingArgoCD)
        );
        let err = "waiting-for-godot".parse::<Step>().unwrap_err();
        assert!(err.to_string().contains("waiting-for-godot"));
        assert!(err.to_string().contains("waiting-talos-maintenance"));
    }
}
