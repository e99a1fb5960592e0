//! Builds a route table's [`PathIndex`] and answers which of its rules a path can match.
//!
//! Every entry that is a prefix of a path lies between that prefix and the path in sorted order,
//! so all of them are ancestors (through `parent`) of the greatest entry not above the path:
//! finding them is one binary search and a walk up a chain, not a scan of the table.

use std::collections::BTreeMap;

use crate::{PathIndex, PathMatch, PathRules, PrefixRules, RouteTable, Snapshot};

impl Snapshot {
    /// Recomputes every route table's path index, for code that builds or edits rules.
    pub fn index_paths(&mut self) {
        for table in &mut self.routes {
            table.index = table.path_index();
        }
    }
}

impl RouteTable {
    /// The index of `rules` by their path conditions.
    pub fn path_index(&self) -> PathIndex {
        let mut exact: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut prefixes: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut any_path = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let i = i as u32;
            if rule.matches.is_empty() {
                any_path.push(i);
            }
            for m in &rule.matches {
                let list = match &m.path {
                    Some(PathMatch::Exact(p)) => exact.entry(p).or_default(),
                    Some(PathMatch::Prefix(p)) => prefixes.entry(p).or_default(),
                    Some(PathMatch::Regex(_)) | None => &mut any_path,
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        let exact = exact
            .into_iter()
            .map(|(path, rules)| PathRules {
                path: path.to_owned(),
                rules,
            })
            .collect();
        let mut chain: Vec<(&str, u32)> = Vec::new();
        let mut out = Vec::with_capacity(prefixes.len());
        for (i, (prefix, rules)) in prefixes.into_iter().enumerate() {
            // Sorted order visits a prefix's ancestors before it: `chain` holds the current
            // nesting, and the first entry from its top that `prefix` starts with is its parent.
            while chain.last().is_some_and(|(p, _)| !prefix.starts_with(p)) {
                chain.pop();
            }
            out.push(PrefixRules {
                prefix: prefix.to_owned(),
                rules,
                parent: chain.last().map(|&(_, index)| index),
            });
            chain.push((prefix, i as u32));
        }
        PathIndex {
            exact,
            prefixes: out,
            any_path,
        }
    }
}

impl PathIndex {
    /// The rule lists a request for `path` must try, at most `N`; `None` when more than `N`
    /// lists apply (the caller then tries every rule). Lists are ascending rule indexes.
    pub fn candidate_lists<'a, const N: usize>(
        &'a self,
        path: &str,
    ) -> Option<CandidateLists<'a, N>> {
        let mut lists = CandidateLists {
            lists: [&[]; N],
            len: 0,
        };
        lists.push(&self.any_path)?;
        if let Ok(i) = self.exact.binary_search_by(|e| e.path.as_str().cmp(path)) {
            lists.push(&self.exact[i].rules)?;
        }
        let below = self.prefixes.partition_point(|e| e.prefix.as_str() <= path);
        let mut at = below.checked_sub(1);
        while let Some(i) = at {
            let entry = &self.prefixes[i];
            if path.starts_with(entry.prefix.as_str()) {
                lists.push(&entry.rules)?;
            }
            at = entry.parent.map(|p| p as usize);
        }
        Some(lists)
    }
}

/// Up to `N` ascending rule lists; iterating yields their union in ascending order.
#[derive(Clone, Copy, Debug)]
pub struct CandidateLists<'a, const N: usize> {
    lists: [&'a [u32]; N],
    len: usize,
}

impl<'a, const N: usize> CandidateLists<'a, N> {
    fn push(&mut self, list: &'a [u32]) -> Option<()> {
        if list.is_empty() {
            return Some(());
        }
        *self.lists.get_mut(self.len)? = list;
        self.len += 1;
        Some(())
    }
}

impl<const N: usize> Iterator for CandidateLists<'_, N> {
    type Item = u32;

    /// The smallest head among the lists; every list holding it advances (no duplicates).
    fn next(&mut self) -> Option<u32> {
        let lists = &mut self.lists[..self.len];
        let smallest = lists.iter().filter_map(|l| l.first()).min().copied()?;
        for list in lists.iter_mut() {
            if list.first() == Some(&smallest) {
                *list = &list[1..];
            }
        }
        Some(smallest)
    }
}

#[cfg(test)]
mod tests;
