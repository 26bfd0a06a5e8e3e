#pragma once
// The word trie behind topic exchanges: binding keys are patterns of '.'-separated words where
// `*` is exactly one word and `#` is zero or more. RabbitMQ rules, kept exactly: empty words
// count (`a..b` is 3 words, `.` is 2 empty words, `*` matches an empty word), the empty string is
// ZERO words, and `a*`, `**`, `##` are plain literals. Used by TopicExchange on the core's one
// thread; match() reuses per-trie scratch, so it is not reentrant.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace depot::core {

// Iterates the words of a routing or binding key without copying. RabbitMQ splits "" into no
// words at all, but "a." into `a` and an empty word, so only the empty key is special.
class TopicWords {
public:
    explicit TopicWords(std::string_view key) : rest_(key), done_(key.empty()) {}

    bool next(std::string_view& word) {
        if (done_)
            return false;
        const std::size_t dot = rest_.find('.');
        if (dot == std::string_view::npos) {
            word = rest_;
            done_ = true;
        } else {
            word = rest_.substr(0, dot);
            rest_.remove_prefix(dot + 1);
        }
        return true;
    }

private:
    std::string_view rest_;
    bool done_;
};

template <class T> class TopicTrie {
public:
    TopicTrie() = default;
    TopicTrie(const TopicTrie&) = delete;
    TopicTrie& operator=(const TopicTrie&) = delete;
    // The epoch moves with the nodes: their stamps must stay below the epoch of the next match.
    TopicTrie(TopicTrie&& other) noexcept
        : root_(std::exchange(other.root_, Node{})),
          bindingCount_(std::exchange(other.bindingCount_, 0)), epoch_(other.epoch_) {}
    TopicTrie& operator=(TopicTrie&& other) noexcept {
        if (this != &other) {
            destroyChildren(root_);
            root_ = std::exchange(other.root_, Node{});
            bindingCount_ = std::exchange(other.bindingCount_, 0);
            epoch_ = other.epoch_;
        }
        return *this;
    }
    ~TopicTrie() { destroyChildren(root_); }

    // Adds one binding of pattern `bindingKey` to `value`. Bindings are counted: adding the same
    // (key, value) twice needs two remove() calls.
    void add(std::string_view bindingKey, T value) {
        Node* node = &root_;
        TopicWords words(bindingKey);
        std::string_view word;
        while (words.next(word)) {
            if (word == "*") {
                if (!node->star_)
                    node->star_ = std::make_unique<Node>();
                node = node->star_.get();
            } else if (word == "#") {
                if (!node->hash_) {
                    node->hash_ = std::make_unique<Node>();
                    node->hash_->isHash_ = true;
                }
                node = node->hash_.get();
            } else {
                const std::uint64_t wordHash = hashWord(word);
                Node* child = node->literals_.find(word, wordHash);
                if (child == nullptr) {
                    auto created = std::make_unique<Node>();
                    created->word_ = word;
                    child = created.get();
                    node->literals_.insert(std::move(created), wordHash);
                }
                node = child;
            }
        }
        for (auto& entry : node->values_) {
            if (entry.first == value) {
                ++entry.second;
                ++bindingCount_;
                return;
            }
        }
        node->values_.emplace_back(value, 1);
        ++bindingCount_;
    }

    // Removes one count of (key, value). Returns false if not present. Prunes empty nodes.
    bool remove(std::string_view bindingKey, T value) {
        // path[i] is reached from path[i - 1] by words[i - 1]; kept to prune bottom-up without
        // recursion, since a binding key may have any number of words.
        std::vector<Node*> path{&root_};
        std::vector<std::string_view> words;
        TopicWords splitter(bindingKey);
        std::string_view word;
        while (splitter.next(word)) {
            Node* child = findChild(*path.back(), word);
            if (child == nullptr)
                return false;
            path.push_back(child);
            words.push_back(word);
        }

        auto& values = path.back()->values_;
        auto it = values.begin();
        while (it != values.end() && !(it->first == value))
            ++it;
        if (it == values.end())
            return false;
        --bindingCount_;
        if (--it->second != 0)
            return true;
        values.erase(it);

        for (std::size_t i = path.size() - 1; i > 0 && path[i]->isEmpty(); --i)
            detachChild(*path[i - 1], words[i - 1]);
        return true;
    }

    // Calls out(value) for every value bound with a pattern that matches routingKey. A value
    // bound by several matching patterns may be reported more than once (the caller dedups).
    //
    // Runs the trie as an NFA: `active_` holds every node reachable after the words read so far,
    // each at most once (the epoch stamp), a `#` node keeps itself active on every word, and
    // entering a `#` child consumes no word. Cost is O(words x active nodes), never the
    // exponential blow-up of backtracking over `#.a.#.a.#`. The key is read word by word in
    // place rather than split into a fixed buffer, so no length needs a fallback path. After the
    // scratch vectors have grown once, nothing is allocated.
    template <class F> void match(std::string_view routingKey, F&& out) {
        active_.clear();
        ++epoch_;
        activate(&root_, active_);

        TopicWords words(routingKey);
        std::string_view word;
        while (!active_.empty() && words.next(word)) {
            next_.clear();
            ++epoch_;
            // Hashed at most once per word, and only if some active node has literal children.
            std::uint64_t wordHash = 0;
            bool hashed = false;
            for (Node* node : active_) {
                if (!node->literals_.empty()) {
                    if (!hashed) {
                        wordHash = hashWord(word);
                        hashed = true;
                    }
                    if (Node* child = node->literals_.find(word, wordHash))
                        activate(child, next_);
                }
                if (node->star_)
                    activate(node->star_.get(), next_);
                if (node->isHash_)
                    activate(node, next_);
            }
            active_.swap(next_);
        }

        for (Node* node : active_)
            for (const auto& entry : node->values_)
                out(entry.first);
    }

    std::size_t bindingCount() const { return bindingCount_; }
    bool empty() const { return bindingCount_ == 0; }

private:
    struct Node;

    // Literal children of one node: open addressing with linear probing, the word itself kept in
    // the child. A one-byte tag per slot (7 hash bits plus "occupied") sits in its own array, so
    // a lookup that misses, the common case on a wide node such as the `*` under a busy prefix,
    // reads only tags, which stay in cache even for a node with 100k children; a hit reads one
    // child pointer and the child, which match() visits next anyway. This replaced
    // std::unordered_map (heterogeneous find works in libstdc++ 12), whose chained buckets cost
    // several dependent cache misses per lookup and made up half of match() time.
    // TODO(security): the hash is unseeded, so a client that may bind can craft colliding words
    // to slow matching on one node; seed it per trie if untrusted clients get bind rights.
    class LiteralChildren {
    public:
        LiteralChildren() = default;
        LiteralChildren(LiteralChildren&& other) noexcept
            : tags_(std::move(other.tags_)), children_(std::move(other.children_)),
              mask_(std::exchange(other.mask_, 0)), size_(std::exchange(other.size_, 0)) {}
        LiteralChildren& operator=(LiteralChildren&& other) noexcept {
            tags_ = std::move(other.tags_);
            children_ = std::move(other.children_);
            mask_ = std::exchange(other.mask_, 0);
            size_ = std::exchange(other.size_, 0);
            return *this;
        }

        Node* find(std::string_view word, std::uint64_t wordHash) const {
            if (size_ == 0)
                return nullptr;
            const std::uint8_t tag = tagOf(wordHash);
            for (std::size_t i = wordHash & mask_; tags_[i] != EMPTY; i = (i + 1) & mask_)
                if (tags_[i] == tag && children_[i]->word_ == word)
                    return children_[i].get();
            return nullptr;
        }

        // `child` must not be present yet.
        void insert(std::unique_ptr<Node> child, std::uint64_t wordHash) {
            // At most half full: probe runs stay short, so a miss rarely reads past one tag.
            if ((size_ + 1) * 2 > capacity())
                rehash(capacity() == 0 ? 2 : capacity() * 2);
            place(std::move(child), wordHash);
            ++size_;
        }

        // The word must be present.
        void erase(std::string_view word, std::uint64_t wordHash) {
            const std::uint8_t tag = tagOf(wordHash);
            std::size_t hole = wordHash & mask_;
            while (!(tags_[hole] == tag && children_[hole]->word_ == word))
                hole = (hole + 1) & mask_;
            children_[hole].reset();
            tags_[hole] = EMPTY;
            // Backward-shift deletion: pull later entries of the probe run into the hole, so no
            // tombstones are needed and find() may stop at the first empty slot.
            for (std::size_t i = (hole + 1) & mask_; tags_[i] != EMPTY; i = (i + 1) & mask_) {
                const std::size_t home = hashWord(children_[i]->word_) & mask_;
                if (((i - home) & mask_) >= ((i - hole) & mask_)) {
                    tags_[hole] = std::exchange(tags_[i], EMPTY);
                    children_[hole] = std::move(children_[i]);
                    hole = i;
                }
            }
            if (--size_ == 0) {
                tags_.reset();
                children_.reset();
                mask_ = 0;
            }
        }

        bool empty() const { return size_ == 0; }

        template <class F> void takeAll(F&& take) {
            for (std::size_t i = 0; i < capacity(); ++i)
                if (children_[i])
                    take(std::move(children_[i]));
            tags_.reset();
            children_.reset();
            mask_ = 0;
            size_ = 0;
        }

    private:
        static constexpr std::uint8_t EMPTY = 0;

        // High bits: the low ones choose the slot, so tags of one probe run differ more.
        static std::uint8_t tagOf(std::uint64_t wordHash) {
            return static_cast<std::uint8_t>((wordHash >> 57) | 0x80);
        }

        std::size_t capacity() const { return tags_ ? mask_ + 1 : 0; }

        void place(std::unique_ptr<Node> child, std::uint64_t wordHash) {
            std::size_t i = wordHash & mask_;
            while (tags_[i] != EMPTY)
                i = (i + 1) & mask_;
            tags_[i] = tagOf(wordHash);
            children_[i] = std::move(child);
        }

        void rehash(std::size_t newCapacity) {
            const std::size_t oldCapacity = capacity();
            std::unique_ptr<std::uint8_t[]> oldTags =
                std::exchange(tags_, std::make_unique<std::uint8_t[]>(newCapacity));
            std::unique_ptr<std::unique_ptr<Node>[]> oldChildren =
                std::exchange(children_, std::make_unique<std::unique_ptr<Node>[]>(newCapacity));
            mask_ = newCapacity - 1;
            for (std::size_t i = 0; i < oldCapacity; ++i)
                if (oldTags[i] != EMPTY) {
                    const std::uint64_t wordHash = hashWord(oldChildren[i]->word_);
                    place(std::move(oldChildren[i]), wordHash);
                }
        }

        std::unique_ptr<std::uint8_t[]> tags_; // EMPTY, or tagOf() of the child's word
        std::unique_ptr<std::unique_ptr<Node>[]> children_;
        std::size_t mask_ = 0; // capacity - 1; capacity is a power of two
        std::size_t size_ = 0;
    };

    struct Node {
        // Fields match() reads on every visit come first.
        std::uint64_t epoch_ = 0; // the match() step that last put this node in an active set
        LiteralChildren literals_;
        std::unique_ptr<Node> star_;
        std::unique_ptr<Node> hash_;
        bool isHash_ = false; // reached by a `#` edge: stays active on every further word
        std::string word_;    // the literal word leading here (empty for root, `*` and `#` nodes)
        // Patterns ending here, with how many times each (key, value) binding was added. Few per
        // node, so a flat vector beats a map.
        std::vector<std::pair<T, std::uint32_t>> values_;

        bool isEmpty() const { return values_.empty() && literals_.empty() && !star_ && !hash_; }
    };

    // Multiply-xorshift hash. Words are short, so the last (or only) 8 bytes are read as two
    // overlapping loads instead of a byte loop: fewer branches that depend on the word length.
    static std::uint64_t hashWord(std::string_view word) {
        constexpr std::uint64_t MUL = 0xbf58476d1ce4e5b9ull;
        const char* p = word.data();
        const std::size_t n = word.size();
        std::uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
        std::uint64_t head = 0;
        std::uint64_t tail = 0;
        if (n >= 8) {
            for (std::size_t i = 0; i + 8 < n; i += 8)
                h = mix((h ^ load<std::uint64_t>(p + i)) * MUL);
            head = load<std::uint64_t>(p + n - 8);
        } else if (n >= 4) {
            head = load<std::uint32_t>(p);
            tail = load<std::uint32_t>(p + n - 4);
        } else if (n > 0) {
            head = std::uint64_t{static_cast<unsigned char>(p[0])} << 16 |
                   std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8 |
                   static_cast<unsigned char>(p[n - 1]);
        }
        h = mix((h ^ head) * MUL);
        h = mix((h ^ tail) * 0x94d049bb133111ebull);
        return h;
    }

    static std::uint64_t mix(std::uint64_t h) { return h ^ (h >> 31); }

    template <class U> static U load(const char* p) {
        U value;
        std::memcpy(&value, p, sizeof value);
        return value;
    }

    void activate(Node* node, std::vector<Node*>& set) {
        // Follows `#` edges too: `#` may match zero words, so `a.#.#` is live as soon as `a` is.
        for (; node != nullptr && node->epoch_ != epoch_; node = node->hash_.get()) {
            node->epoch_ = epoch_;
            set.push_back(node);
        }
    }

    static Node* findChild(Node& node, std::string_view word) {
        if (word == "*")
            return node.star_.get();
        if (word == "#")
            return node.hash_.get();
        return node.literals_.find(word, hashWord(word));
    }

    static void detachChild(Node& node, std::string_view word) {
        if (word == "*")
            node.star_.reset();
        else if (word == "#")
            node.hash_.reset();
        else
            node.literals_.erase(word, hashWord(word));
    }

    // Tears the trie down iteratively: a pattern of many words makes a deep chain, and the
    // default recursive unique_ptr destruction would use stack in proportion to its length.
    static void destroyChildren(Node& root) {
        std::vector<std::unique_ptr<Node>> pending;
        auto takeChildren = [&pending](Node& node) {
            node.literals_.takeAll(
                [&pending](std::unique_ptr<Node> child) { pending.push_back(std::move(child)); });
            if (node.star_)
                pending.push_back(std::move(node.star_));
            if (node.hash_)
                pending.push_back(std::move(node.hash_));
        };
        takeChildren(root);
        while (!pending.empty()) {
            std::unique_ptr<Node> node = std::move(pending.back());
            pending.pop_back();
            takeChildren(*node);
        }
    }

    Node root_;
    std::size_t bindingCount_ = 0;
    std::uint64_t epoch_ = 0;
    std::vector<Node*> active_;
    std::vector<Node*> next_;
};

} // namespace depot::core
