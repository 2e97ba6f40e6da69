//! `hkrun scale`: worked out against the formation first (`plan_scale`, which changes
//! nothing and refuses all or nothing), then carried out (`commit_scale`) once the ports of
//! its new web dynos are known to be free.

use std::time::Duration;
use std::time::Instant;

use super::Supervisor;
use super::replies::Pending;
use crate::dyno::RELEASE;
use crate::plan::DynoSpec;
use crate::plan::formation::{DynoSize, MAX_PER_TYPE, ScaleChange, ScaleOp};
use crate::supervisor::input::Effect;
use crate::supervisor::outcome::{Outcome, Refusal, TypeSize};

/// A scale worked out: each type named with its new count and size (in the order first
/// named), the dynos it adds, and the new generation of web dynos it resizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ScalePlan {
    wanted: Vec<Wanted>,
    pub(super) additions: Vec<(usize, DynoSpec)>,
    pub(super) preboots: Vec<(usize, Vec<DynoSpec>)>,
}

/// A type's place in the plan's types, its new count, and its new size if one was given.
type Wanted = (usize, u32, Option<DynoSize>);

impl Supervisor {
    /// All or nothing: every change is checked before any takes effect.
    pub(super) fn plan_scale(&self, changes: &[ScaleChange]) -> Result<ScalePlan, Refusal> {
        let wanted = self.wanted(changes)?;
        let additions = self.additions(&wanted)?;
        // A new size is a restart: preboot for web behind the router (or, with no free
        // ports for a second generation, stop-then-start). Its new dynos' ports are chosen
        // now, past those of the dynos added, so that they are probed with them.
        let added_ports: Vec<u16> = additions.iter().filter_map(|(_, p)| p.spec.port).collect();
        let mut preboots = Vec::new();
        for &(t, count, size) in &wanted {
            let ty = &self.plan.types[t];
            let resized = size.is_some_and(|size| size != ty.size);
            if !(resized && self.plan.preboot && ty.role.is_web()) {
                continue;
            }
            let members = self.members(&ty.name);
            let kept = &members[..members.len().min(count as usize)];
            if let (false, Ok(plans)) = (kept.is_empty(), self.preboot_plans(kept, &added_ports)) {
                preboots.push((t, plans));
            }
        }
        Ok(ScalePlan {
            wanted,
            additions,
            preboots,
        })
    }

    /// Each type named, with its new count and size.
    fn wanted(&self, changes: &[ScaleChange]) -> Result<Vec<Wanted>, Refusal> {
        let mut wanted: Vec<(usize, u32, Option<DynoSize>)> = Vec::new();
        for change in changes {
            if change.name == RELEASE {
                return Err(Refusal::ReleaseIsNotAType);
            }
            let t = self
                .plan
                .types
                .iter()
                .position(|t| t.name == change.name)
                .ok_or_else(|| self.unknown_type(&change.name))?;
            let entry = match wanted.iter().position(|w| w.0 == t) {
                Some(at) => at,
                None => {
                    let count = u32::try_from(self.members(&change.name).len()).unwrap_or(0);
                    wanted.push((t, count, None));
                    wanted.len() - 1
                }
            };
            let (_, count, size) = &mut wanted[entry];
            *count = match change.op {
                ScaleOp::Set(n) => n,
                ScaleOp::Add(n) => count.saturating_add(n),
                ScaleOp::Sub(n) => count.checked_sub(n).ok_or_else(|| Refusal::BelowZero {
                    name: change.name.clone(),
                    runs: *count,
                })?,
                ScaleOp::Keep => *count,
            };
            if *count > MAX_PER_TYPE {
                return Err(Refusal::TooMany {
                    name: change.name.clone(),
                    count: *count,
                });
            }
            if change.size.is_some() {
                *size = change.size;
            }
        }
        Ok(wanted)
    }

    /// The dynos the scale adds, each with a port before anything starts.
    fn additions(&self, wanted: &[Wanted]) -> Result<Vec<(usize, DynoSpec)>, Refusal> {
        let mut additions = Vec::new();
        for &(t, count, _) in wanted {
            let kind = &self.plan.types[t].name;
            let taken: Vec<u32> = self
                .dynos
                .iter()
                .filter(|d| &d.slot().kind == kind)
                .map(|d| d.slot().index)
                .collect();
            let have = self.members(kind).len();
            let wanted = (count as usize).saturating_sub(have);
            // Numbers stay within the type's block of ports, even while others stop.
            let free: Vec<u32> = (1..=MAX_PER_TYPE)
                .filter(|n| !taken.contains(n))
                .take(wanted)
                .collect();
            if free.len() < wanted {
                return Err(Refusal::StillStopping { name: kind.clone() });
            }
            for n in free {
                let mut plan = self.plan.types[t]
                    .dyno(n, self.plan.base_port)
                    .map_err(|e| Refusal::NoPort {
                        error: e.to_string(),
                    })?;
                // A preboot may have moved a dyno of this type onto this number's port:
                // take the next one of the block that no dyno of the app holds.
                let held = |port: u16, additions: &[(usize, DynoSpec)]| {
                    self.dynos.iter().any(|d| d.plan().spec.port == Some(port))
                        || additions.iter().any(|(_, p)| p.spec.port == Some(port))
                };
                if let Some(port) = plan.spec.port.filter(|&p| held(p, &additions)) {
                    plan.spec.port = self.plan.types[t]
                        .ports(self.plan.base_port)
                        .filter(|&p| p >= port)
                        .find(|&p| !held(p, &additions));
                    if plan.spec.port.is_none() {
                        return Err(Refusal::NoFreePort { name: kind.clone() });
                    }
                }
                additions.push((t, plan));
            }
        }
        Ok(additions)
    }

    /// Carries out a scale whose new web dynos' ports are free. Answered once the dynos
    /// leaving the formation are gone, so the next request starts from there.
    pub(super) fn commit_scale(
        &mut self,
        now: Instant,
        id: u64,
        plan: ScalePlan,
    ) -> (Vec<Effect>, Option<Outcome>) {
        let ScalePlan {
            wanted,
            additions,
            mut preboots,
        } = plan;
        let mut effects = Vec::new();
        let mut leaving = Vec::new();
        for &(t, count, size) in &wanted {
            let kind = self.plan.types[t].name.clone();
            let resized = size.is_some_and(|size| size != self.plan.types[t].size);
            if let Some(size) = size {
                self.plan.types[t].size = size;
            }
            let members = self.members(&kind);
            let keep = members.len().min(count as usize);
            // Highest numbers leave first.
            for slot in members[keep..].iter().rev() {
                effects.extend(self.retire(now, slot, Duration::ZERO));
                leaving.push(slot.clone());
            }
            if resized {
                let preboot = preboots
                    .iter()
                    .position(|(of, _)| *of == t)
                    .map(|at| preboots.swap_remove(at).1);
                effects.extend(self.resize(now, t, &members[..keep], preboot));
            }
        }
        for (t, mut plan) in additions {
            // A size given in this same request applies to the new dynos too.
            plan.quota = self.plan.types[t].size.bytes;
            let held = self.is_held(&plan.spec.slot.kind);
            let i = self.add_dyno(plan, now);
            if !held {
                effects.extend(self.launch(now, i));
            }
        }
        let types = wanted
            .iter()
            .map(|&(t, count, _)| {
                let ty = &self.plan.types[t];
                TypeSize {
                    name: ty.name.clone(),
                    count,
                    size: ty.size.to_string(),
                }
            })
            .collect();
        let answer = Outcome::Scaled { types };
        if leaving.iter().all(|s| self.find(s).is_none()) {
            return (effects, Some(answer));
        }
        self.reply_later(Pending::scaled(id, leaving, answer));
        (effects, None)
    }

    /// Type `t`'s kept dynos take its new size: preboot's new generation (`preboot`),
    /// or each stopped and started.
    fn resize(
        &mut self,
        now: Instant,
        t: usize,
        kept: &[crate::dyno::Slot],
        preboot: Option<Vec<DynoSpec>>,
    ) -> Vec<Effect> {
        let quota = self.plan.types[t].size.bytes;
        for slot in kept {
            if let Some(i) = self.find(slot) {
                self.dynos[i].set_quota(quota);
            }
        }
        let mut effects = Vec::new();
        if let Some(mut plans) = preboot {
            for plan in &mut plans {
                plan.quota = quota;
            }
            effects.extend(self.start_preboot(now, kept, plans, None));
        } else {
            for slot in kept {
                if let Some(i) = self.find(slot) {
                    effects.extend(self.restart_one(now, i));
                }
            }
        }
        effects
    }
}
