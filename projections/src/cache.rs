//! An in-memory copy of read-model rows that their projector keeps honest.
//!
//! The query side may serve a read model from memory only if it can never serve a value
//! older than what a waiting reader was promised. The rules:
//!
//! - the projector drops changed keys after its batch commits and before its progress is
//!   published (`Projector::committed`), so read-your-writes holds in this process;
//! - it also notifies a channel inside the batch's transaction, and the runtime's listener
//!   drops those keys in every other process before relaying that batch's checkpoint;
//! - a load that started before an invalidation of its stripe does not store its result, so
//!   a row read just before a commit cannot outlive the invalidation that followed it;
//! - while the listener does not follow the channel (before it first connects, after it lost
//!   its connection) the cache neither serves nor keeps anything, and starts over empty once
//!   it follows again: notices sent meanwhile are lost.
//!
//! Memory is bounded by weight: each entry weighs what its [`Weighter`] says (bytes for the
//! windows cache, where one user can cost a hundred times another; one per entry for API
//! keys), and beyond the budget the entries read least lately make room. The storage and its
//! eviction are `quick_cache`'s (CLOCK-Pro-like: an entry read again since it was stored is
//! kept over one that was not, and a bulk load cannot flush the entries in use); the rules
//! above are kept here, by generations the cache itself knows nothing of.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use quick_cache::{UnitWeighter, Weighter};

use crate::runtime::Subscription;

/// Lock stripes of the generations (independent of the storage's own shards).
const STRIPES: usize = 32;

pub struct InvalidatingCache<K, V, W = UnitWeighter> {
    entries: quick_cache::sync::Cache<K, V, W>,
    weighter: W,
    /// One generation per stripe of keys, bumped by every write and invalidation in it. A
    /// load stores its result only if its stripe's generation did not move while it read,
    /// and it stores under the stripe's lock, so a store and an invalidation never interleave.
    stripes: Vec<Mutex<u64>>,
    /// Names this process in the notices it sends, so that its own listener skips them: the
    /// writer here already updated or dropped those keys, and dropping a key it just wrote
    /// through would only force a reload.
    origin: String,
    /// Set while notices may be missed: every read goes to the table, nothing is kept.
    standing_aside: AtomicBool,
}

/// What [`InvalidatingCache::fill`] did with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    Stored,
    /// Not stored: its key changed or was stored meanwhile, or the cache stands aside.
    Skipped,
    /// Not stored: it would take the cache past its budget, so a bulk load should stop.
    Full,
}

impl<K: Hash + Eq + Clone, V: Clone> InvalidatingCache<K, V> {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self::with_weighter(capacity as u64, capacity, 1, UnitWeighter)
    }
}

impl<K: Hash + Eq + Clone, V: Clone, W: Weighter<K, V> + Clone> InvalidatingCache<K, V, W> {
    /// A cache whose entries weigh at most `budget` together, as `weighter` weighs them;
    /// `estimated_entries` sizes its tables, and `heaviest` is about what the heaviest entry
    /// can weigh.
    pub fn with_weighter(
        budget: u64,
        estimated_entries: usize,
        heaviest: u64,
        weighter: W,
    ) -> Self {
        // The storage splits the budget evenly among its lock shards and evicts within each.
        // A shard holds at least 64 of the heaviest entries, so that a few heavy ones landing
        // in one shard cannot squeeze it while others have room: fewer shards for a small
        // budget, as many as the storage would choose (4 per core) for a large one.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (budget / heaviest.max(1).saturating_mul(64)).clamp(1, 4 * cores as u64);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards as usize)
            .estimated_items_capacity(estimated_entries.max(1))
            .weight_capacity(budget.max(1))
            .build()
            .expect("every option is set");
        Self {
            entries: quick_cache::sync::Cache::with_options(
                options,
                weighter.clone(),
                Default::default(),
                Default::default(),
            ),
            weighter,
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            origin: format!("{:016x}", rand::random::<u64>()),
            standing_aside: AtomicBool::new(false),
        }
    }

    fn is_standing_aside(&self) -> bool {
        self.standing_aside.load(Ordering::SeqCst)
    }

    /// Stops serving and keeping values (the flag first, so nothing is kept after the clear).
    pub fn stand_aside(&self) {
        self.standing_aside.store(true, Ordering::SeqCst);
        self.clear();
    }

    /// Serves again, from empty. The clear bumps every generation first, so a load that
    /// started while standing aside cannot store its possibly stale result.
    pub fn resume(&self) {
        self.clear();
        self.standing_aside.store(false, Ordering::SeqCst);
    }

    /// The payload telling other processes to drop `keys` (at most a few hundred: a
    /// notification is capped at 8000 bytes).
    pub fn notice<T: std::fmt::Display>(&self, keys: impl IntoIterator<Item = T>) -> String {
        let keys: Vec<String> = keys.into_iter().map(|key| key.to_string()).collect();
        format!("{} {}", self.origin, keys.join(","))
    }

    fn stripe_index(&self, key: &K) -> usize {
        use std::hash::{BuildHasher, RandomState};
        use std::sync::OnceLock;
        // One hasher for every thread: a key must map to the same stripe everywhere.
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let hash = HASHER.get_or_init(RandomState::new).hash_one(key);
        (hash as usize) % STRIPES
    }

    fn stripe(&self, index: usize) -> MutexGuard<'_, u64> {
        self.stripes[index].lock().expect("cache lock")
    }

    /// The cached value, or `load`'s (stored unless invalidated meanwhile). `load` returning
    /// `Ok(None)` is not cached: an unknown key costs a lookup each time, not memory.
    pub async fn get_or_load<E, F>(&self, key: K, load: F) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        if self.is_standing_aside() {
            return load.await;
        }
        if let Some(value) = self.entries.get(&key) {
            return Ok(Some(value));
        }
        let index = self.stripe_index(&key);
        let generation = *self.stripe(index);
        let loaded = load.await?;
        if let Some(value) = &loaded {
            let stripe = self.stripe(index);
            if *stripe == generation && !self.is_standing_aside() {
                self.entries.insert(key, value.clone());
            }
        }
        Ok(loaded)
    }

    /// Stores a value known to be current (a projector's own write, after its commit).
    pub fn put(&self, key: K, value: V) {
        let mut stripe = self.stripe(self.stripe_index(&key));
        *stripe += 1;
        if self.is_standing_aside() {
            self.entries.remove(&key);
        } else {
            self.entries.insert(key, value);
        }
    }

    /// Every stripe's generation, to pass to [`Self::fill`] later.
    pub fn generations(&self) -> Vec<u64> {
        (0..STRIPES).map(|index| *self.stripe(index)).collect()
    }

    /// Stores `value` read from the table after `generations` were taken, unless its stripe
    /// changed since (warming a cache in bulk) or the key is already cached (a newer write).
    /// A value that does not fit in what is left of the budget is not stored, so a bulk load
    /// stops there rather than evict what queries loaded. (Each of the storage's shards holds
    /// a share of the budget, so the last few stores may still make room in their shard.)
    pub fn fill(&self, key: K, value: V, generations: &[u64]) -> Filled {
        let weight = self.weighter.weight(&key, &value);
        if self.entries.weight().saturating_add(weight) > self.entries.capacity() {
            return Filled::Full;
        }
        let index = self.stripe_index(&key);
        let stripe = self.stripe(index);
        if self.is_standing_aside()
            || generations.get(index) != Some(&*stripe)
            || self.entries.contains_key(&key)
        {
            return Filled::Skipped;
        }
        self.entries.insert(key, value);
        Filled::Stored
    }

    pub fn invalidate(&self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            let mut stripe = self.stripe(self.stripe_index(&key));
            self.entries.remove(&key);
            *stripe += 1;
        }
    }

    pub fn clear(&self) {
        // Every stripe at once (in order, as nothing else takes two), so no store of a load
        // that began before the clear can land after it.
        let mut stripes: Vec<MutexGuard<'_, u64>> = (0..STRIPES).map(|i| self.stripe(i)).collect();
        self.entries.clear();
        for stripe in &mut stripes {
            **stripe += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the entries weigh together, never more than [`Self::budget`].
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    pub fn budget(&self) -> u64 {
        self.entries.capacity()
    }
}

impl<K, V, W> InvalidatingCache<K, V, W>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    W: Weighter<K, V> + Clone + Send + Sync + 'static,
{
    /// Follows `channel`: a payload of comma-separated keys (parsed by `parse`) drops those,
    /// `*` drops everything; while the channel is not followed the cache stands aside.
    pub fn subscription(
        self: &Arc<Self>,
        channel: &'static str,
        parse: fn(&str) -> Option<K>,
    ) -> Subscription {
        let on_notice = self.clone();
        let (on_unfollowed, on_followed) = (self.clone(), self.clone());
        Subscription {
            channel,
            on_notice: Arc::new(move |payload: &str| {
                if payload == "*" {
                    on_notice.clear();
                    return;
                }
                let (origin, keys) = payload.split_once(' ').unwrap_or(("", payload));
                if origin != on_notice.origin {
                    on_notice.invalidate(keys.split(',').filter_map(parse));
                }
            }),
            on_unfollowed: Arc::new(move || on_unfollowed.stand_aside()),
            on_followed: Arc::new(move || on_followed.resume()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_load_overtaken_by_an_invalidation_is_not_stored() {
        let cache: InvalidatingCache<u32, &str> = InvalidatingCache::new(100);
        let loaded = cache
            .get_or_load(1, async {
                // The row changes while we read it.
                cache.invalidate([1]);
                Ok::<_, ()>(Some("old"))
            })
            .await
            .unwrap();
        assert_eq!(loaded, Some("old"), "the caller still gets what it read");
        let again = cache
            .get_or_load(1, async { Ok::<_, ()>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(again, Some("new"), "but the stale value was not kept");
        let cached = cache
            .get_or_load(1, async { Ok::<_, ()>(Some("never read")) })
            .await
            .unwrap();
        assert_eq!(cached, Some("new"));
    }

    #[tokio::test]
    async fn unknown_keys_are_not_cached_and_capacity_is_bounded() {
        let cache: InvalidatingCache<u32, u32> = InvalidatingCache::new(32);
        assert_eq!(
            cache
                .get_or_load(7, async { Ok::<_, ()>(None) })
                .await
                .unwrap(),
            None
        );
        assert!(cache.is_empty());
        for key in 0..1000 {
            cache
                .get_or_load(key, async move { Ok::<_, ()>(Some(key)) })
                .await
                .unwrap();
        }
        assert!(cache.len() <= 32, "{}", cache.len());
    }

    #[test]
    fn a_key_lives_in_the_same_shard_on_every_thread() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(1000));
        for key in 0..200 {
            cache.put(key, key);
        }
        // Invalidate from other threads: every entry must go, wherever it was stored.
        let handles: Vec<_> = (0..4)
            .map(|part| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.invalidate((0..200).filter(|k| k % 4 == part)))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(cache.is_empty(), "{} entries survived", cache.len());
    }

    #[test]
    fn a_bulk_fill_does_not_overwrite_a_newer_value_or_outlive_an_invalidation() {
        let cache: InvalidatingCache<u32, &str> = InvalidatingCache::new(100);
        let generations = cache.generations();
        cache.put(1, "written by the projector");
        cache.invalidate([2]);
        cache.fill(1, "read before the write", &generations);
        cache.fill(2, "read before the invalidation", &generations);
        cache.fill(3, "untouched", &cache.generations());
        let get = |key| {
            futures::executor::block_on(cache.get_or_load(key, async { Ok::<_, ()>(None) }))
                .unwrap()
        };
        assert_eq!(get(1), Some("written by the projector"));
        assert_eq!(get(2), None);
        assert_eq!(get(3), Some("untouched"));
    }

    #[tokio::test]
    async fn notices_drop_named_keys_and_a_star_or_a_gap_drops_all() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(100));
        for key in 1..=3 {
            cache
                .get_or_load(key, async move { Ok::<_, ()>(Some(key)) })
                .await
                .unwrap();
        }
        let subscription = cache.subscription("test", |s| s.parse().ok());
        (subscription.on_notice)(&cache.notice([1, 2]));
        assert_eq!(cache.len(), 3, "a process ignores its own notices");
        (subscription.on_notice)("another-process 1,2");
        assert_eq!(cache.len(), 1);
        (subscription.on_notice)("*");
        assert!(cache.is_empty());
        cache
            .get_or_load(4, async { Ok::<_, ()>(Some(4)) })
            .await
            .unwrap();
        (subscription.on_unfollowed)();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn while_notices_may_be_missed_nothing_is_served_or_kept() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(100));
        let subscription = cache.subscription("test", |s| s.parse().ok());
        cache.put(1, 10);
        (subscription.on_unfollowed)();
        assert!(cache.is_empty());
        // Reads go to the table each time; writes and fills are not kept.
        for fresh in [11, 12] {
            let read = cache.get_or_load(1, async move { Ok::<_, ()>(Some(fresh)) });
            assert_eq!(read.await.unwrap(), Some(fresh));
        }
        cache.put(2, 20);
        cache.fill(3, 30, &cache.generations());
        assert!(cache.is_empty());
        // A load that started while unfollowed does not store after the cache resumed.
        let generations = cache.generations();
        (subscription.on_followed)();
        cache.fill(4, 40, &generations);
        assert!(cache.is_empty());
        cache
            .get_or_load(5, async { Ok::<_, ()>(Some(50)) })
            .await
            .unwrap();
        assert_eq!(cache.len(), 1, "following again, the cache keeps values");
    }

    /// Weighs a value by its length, as the windows cache weighs users by their bytes.
    #[derive(Clone)]
    struct ByLength;

    impl Weighter<u32, Arc<Vec<u8>>> for ByLength {
        fn weight(&self, _key: &u32, value: &Arc<Vec<u8>>) -> u64 {
            value.len() as u64
        }
    }

    fn weight_held(cache: &InvalidatingCache<u32, Arc<Vec<u8>>, ByLength>, keys: u32) -> u64 {
        (0..keys)
            .filter_map(|key| cache.entries.peek(&key))
            .map(|value| value.len() as u64)
            .sum()
    }

    #[tokio::test]
    async fn heavy_and_light_entries_together_stay_within_the_budget_in_bytes() {
        let budget = 64 * 1024;
        let cache = InvalidatingCache::with_weighter(budget, 256, 4000, ByLength);
        for key in 0..2000u32 {
            // One in ten is a hundred times heavier than the others.
            let bytes = if key % 10 == 0 { 4000 } else { 40 };
            let value = Arc::new(vec![0u8; bytes]);
            if key % 2 == 0 {
                cache.put(key, value);
            } else {
                cache
                    .get_or_load(key, async { Ok::<_, ()>(Some(value)) })
                    .await
                    .unwrap();
            }
            assert!(cache.weight() <= budget, "{} after {key}", cache.weight());
        }
        let held = weight_held(&cache, 2000);
        assert_eq!(held, cache.weight(), "the cache's count is what it holds");
        assert!(held <= budget && held > budget / 2, "{held}");
    }

    #[tokio::test]
    async fn entries_read_often_survive_a_stream_of_entries_read_once() {
        let cache = InvalidatingCache::with_weighter(100 * 1000, 100, 1000, ByLength);
        let value = Arc::new(vec![0u8; 1000]);
        let read = async |key: u32| {
            cache
                .get_or_load(key, async { Ok::<_, ()>(Some(value.clone())) })
                .await
                .unwrap();
        };
        // The budget is full already (a preload), with entries nobody reads again.
        let generations = cache.generations();
        for key in 5000..5100u32 {
            cache.fill(key, value.clone(), &generations);
        }
        let hot = 0..20u32;
        for key in hot.clone() {
            read(key).await;
        }
        // Ten times the budget of entries read once each, the hot ones read in between.
        for cold in 1000..2000u32 {
            read(cold).await;
            if cold % 10 == 0 {
                for key in hot.clone() {
                    read(key).await;
                }
            }
        }
        let evicted: Vec<u32> = hot
            .filter(|key| cache.entries.peek(key).is_none())
            .collect();
        assert!(evicted.is_empty(), "hot entries evicted: {evicted:?}");
        assert!(cache.weight() <= 100 * 1000);
    }

    #[test]
    fn a_bulk_fill_stops_at_the_budget_without_evicting() {
        let budget = 10_000;
        let cache = InvalidatingCache::with_weighter(budget, 16, 1000, ByLength);
        cache.put(0, Arc::new(vec![0u8; 1000]));
        let generations = cache.generations();
        let mut stored = 0;
        let outcome = (1..100u32)
            .map(|key| cache.fill(key, Arc::new(vec![0u8; 1000]), &generations))
            .inspect(|filled| stored += u32::from(*filled == Filled::Stored))
            .find(|filled| *filled == Filled::Full);
        assert_eq!(outcome, Some(Filled::Full));
        assert!(cache.weight() <= budget);
        assert!(stored >= 5, "stored only {stored}");
        assert!(
            cache.entries.peek(&0).is_some(),
            "the fill evicted an entry in use"
        );
    }
}
