#include "emissions/topic_router.hpp"

#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace emissions {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The mappings from the Elixir Emissions README, once per router kind.
constexpr auto kTopics =
    make_topic_router(topic("orders", "order_created", "order_updated", "order_shipped"),
                      topic("inventory", "item_received", "item_adjusted", "item_moved"),
                      topic("users", "user_created", "user_updated"));

TopicRouter seed_router() {
  return TopicRouter{{"orders", {"order_created", "order_updated", "order_shipped"}},
                     {"inventory", {"item_received", "item_adjusted", "item_moved"}},
                     {"users", {"user_created", "user_updated"}}};
}

// The message of the ConfigError that building `groups` throws, or "" if none is thrown.
std::string config_error(std::vector<TopicGroup> groups) {
  try {
    TopicRouter router(groups);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// ---- compile time ---------------------------------------------------------------------

static_assert(kTopics.topic_for_event("order_created") == "orders");
static_assert(kTopics.topic_for_event("item_moved") == "inventory");
static_assert(kTopics.topic_for_event("user_updated") == "users");
static_assert(!kTopics.topic_for_event("order_deleted").has_value());
static_assert(!kTopics.topic_for_event("").has_value());
static_assert(!kTopics.topic_for_event(std::string_view("order_created", 5)).has_value());
static_assert(kTopics.topics().size() == 3);
static_assert(kTopics.topics()[0] == "orders" && kTopics.topics()[2] == "users");
static_assert(kTopics.events_for_topic("inventory").size() == 3);
static_assert(kTopics.events_for_topic("inventory")[1] == "item_adjusted");
static_assert(kTopics.events_for_topic("payments").empty());
static_assert(std::is_same_v<decltype(kTopics), const StaticTopicRouter<3, 8>>);

// The class template form, with a topic that lists no events.
constexpr StaticTopicRouter kWithEmptyTopic{topic("audit"), topic("orders", "order_created")};
static_assert(kWithEmptyTopic.topics().size() == 2);
static_assert(kWithEmptyTopic.events_for_topic("audit").empty());
static_assert(kWithEmptyTopic.topic_for_event("order_created") == "orders");

// No topics at all.
constexpr auto kEmpty = make_topic_router();
static_assert(kEmpty.topics().empty());
static_assert(!kEmpty.topic_for_event("order_created").has_value());

// Names of every length the hash treats differently (1-3, 4-7, 8, 9-16, longer).
constexpr auto kLengths = make_topic_router(
    topic("short", "a", "b", "ab", "ba", "abc", "acb", "cba"),
    topic("medium", "abcd", "abce", "abcde", "abcdef", "abcdefg", "bbcdefg"),
    topic("long", "abcdefgh", "abcdefgi", "abcdefghi", "bbcdefghi", "abcdefghijklmnop",
          "abcdefghijklmnopq", "abcdefghijklmnopqrstuvwxyz_0123456789", "abcdefghXjklmnopq"));
static_assert(kLengths.topic_for_event("ba") == "short");
static_assert(kLengths.topic_for_event("bbcdefg") == "medium");
static_assert(kLengths.topic_for_event("abcdefghXjklmnopq") == "long");
static_assert(!kLengths.topic_for_event("abcdefghYjklmnopq").has_value());
static_assert(!kLengths.topic_for_event("bb").has_value());

TEST(StaticTopicRouterTest, IsUsableInConstantExpressionsInsideFunctions) {
  constexpr auto router = make_topic_router(topic("t", "e1", "e2"));
  static_assert(router.events_for_topic("t")[1] == "e2");
  static_assert(router.topic_for_event("e2") == "t");
  EXPECT_EQ(router.topic_for_event("e1"), "t");
}

TEST(StaticTopicRouterTest, LooksUpNamesOnlyKnownAtRunTime) {
  // Built by the compiler, probed with texts made at run time.
  const std::vector<std::string> names = {"order_created", "item_received", "user_updated",
                                          "order_deleted"};
  EXPECT_EQ(kTopics.topic_for_event(names[0]), "orders");
  EXPECT_EQ(kTopics.topic_for_event(std::string_view(names[1])), "inventory");
  EXPECT_EQ(kTopics.topic_for_event(names[2].c_str()), "users");
  EXPECT_EQ(kTopics.topic_for_event(names[3]), std::nullopt);
  EXPECT_THAT(kTopics.events_for_topic(std::string("orders")),
              ElementsAre("order_created", "order_updated", "order_shipped"));
}

TEST(StaticTopicRouterTest, LooksUpEveryLengthOfNameAtRunTime) {
  for (const std::string_view topic_name : kLengths.topics()) {
    for (const std::string_view event : kLengths.events_for_topic(topic_name)) {
      const std::string copy(event);  // not the literal's address
      EXPECT_EQ(kLengths.topic_for_event(copy), topic_name) << copy;
    }
  }
}

TEST(StaticTopicRouterTest, AcceptsEventNames) {
  EXPECT_EQ(kTopics.topic_for_event(EventName("item_adjusted")), "inventory");
  EXPECT_EQ(kTopics.topic_for_event(EventName("nope")), std::nullopt);
  EXPECT_EQ(kTopics.topic_for_event(EventName()), std::nullopt);
}

TEST(StaticTopicRouterTest, HashIsTheSameAtCompileTimeAndRunTime) {
  // The static router's table is hashed by the compiler and probed at run time.
  static constexpr std::string_view kText = "abcdefghijklmnopqrstuvwxyz0123456789_ABCDEFGHIJ";
  for (std::size_t n = 0; n <= kText.size(); ++n) {
    const std::string runtime(kText.substr(0, n));
    const std::uint64_t at_run_time = detail::hash_text(runtime);
    std::uint64_t at_compile_time = 0;
    [&]<std::size_t... Is>(std::index_sequence<Is...>) {
      constexpr std::array<std::uint64_t, sizeof...(Is)> kHashes = {
          detail::hash_text(kText.substr(0, Is))...};
      at_compile_time = kHashes[n];
    }
    (std::make_index_sequence<kText.size() + 1>());
    EXPECT_EQ(at_run_time, at_compile_time) << "length " << n;
  }
}

TEST(StaticTopicRouterTest, ConvertsToAnEquivalentRuntimeRouter) {
  const TopicRouter router(kTopics);
  EXPECT_THAT(router.topics(), ElementsAre("orders", "inventory", "users"));
  for (const std::string_view topic_name : kTopics.topics()) {
    EXPECT_THAT(router.events_for_topic(topic_name),
                ::testing::ElementsAreArray(kTopics.events_for_topic(topic_name)));
    for (const std::string_view event : kTopics.events_for_topic(topic_name)) {
      EXPECT_EQ(router.topic_for_event(event), topic_name);
      EXPECT_EQ(router.topic_for_event(EventName(event)), topic_name);
    }
  }
  const TopicRouter with_empty(kWithEmptyTopic);
  EXPECT_THAT(with_empty.topics(), ElementsAre("audit", "orders"));
  EXPECT_THAT(with_empty.events_for_topic("audit"), IsEmpty());
}

// ---- run time: lookups ----------------------------------------------------------------

TEST(TopicRouterTest, KnownEventMapsToItsTopic) {
  const TopicRouter router = seed_router();
  EXPECT_EQ(router.topic_for_event("order_created"), "orders");
  EXPECT_EQ(router.topic_for_event("order_shipped"), "orders");
  EXPECT_EQ(router.topic_for_event("item_moved"), "inventory");
  EXPECT_EQ(router.topic_for_event("user_created"), "users");
}

TEST(TopicRouterTest, UnknownEventHasNoTopic) {
  const TopicRouter router = seed_router();
  EXPECT_EQ(router.topic_for_event("order_deleted"), std::nullopt);
  EXPECT_EQ(router.topic_for_event(""), std::nullopt);
  EXPECT_EQ(router.topic_for_event("orders"), std::nullopt);  // a topic is not an event
}

TEST(TopicRouterTest, MatchesWholeNamesExactly) {
  const TopicRouter router = seed_router();
  EXPECT_EQ(router.topic_for_event("order_create"), std::nullopt);
  EXPECT_EQ(router.topic_for_event("order_created "), std::nullopt);
  EXPECT_EQ(router.topic_for_event("Order_created"), std::nullopt);
  const std::string padded = "xorder_createdx";
  EXPECT_EQ(router.topic_for_event(std::string_view(padded).substr(1, 13)), "orders");
}

TEST(TopicRouterTest, AcceptsEveryKindOfString) {
  const TopicRouter router = seed_router();
  const std::string name = "user_updated";
  const char* c_name = name.c_str();
  EXPECT_EQ(router.topic_for_event(name), "users");
  EXPECT_EQ(router.topic_for_event(c_name), "users");
  EXPECT_EQ(router.topic_for_event(std::string_view(name)), "users");
  EXPECT_EQ(router.topic_for_event("user_updated"), "users");
}

TEST(TopicRouterTest, EventNameLookupAgreesWithTextLookup) {
  const TopicRouter router = seed_router();
  for (const char* event : {"order_created", "order_updated", "order_shipped", "item_received",
                            "item_adjusted", "item_moved", "user_created", "user_updated",
                            "order_deleted", "x", "a_name_nobody_declared_anywhere"}) {
    EXPECT_EQ(router.topic_for_event(EventName(event)), router.topic_for_event(event)) << event;
  }
  EXPECT_EQ(router.topic_for_event(EventName()), std::nullopt);
}

TEST(TopicRouterTest, TopicsKeepDeclarationOrder) {
  const TopicRouter router{{"zeta", {"z"}}, {"alpha", {"a"}}, {"mid", {"m"}}};
  EXPECT_THAT(router.topics(), ElementsAre("zeta", "alpha", "mid"));
}

TEST(TopicRouterTest, EventsForTopicKeepDeclarationOrder) {
  const TopicRouter router = seed_router();
  EXPECT_THAT(router.events_for_topic("orders"),
              ElementsAre("order_created", "order_updated", "order_shipped"));
  EXPECT_THAT(router.events_for_topic("users"), ElementsAre("user_created", "user_updated"));
}

TEST(TopicRouterTest, UnknownTopicHasNoEvents) {
  const TopicRouter router = seed_router();
  EXPECT_THAT(router.events_for_topic("payments"), IsEmpty());
  EXPECT_THAT(router.events_for_topic(""), IsEmpty());
  EXPECT_THAT(router.events_for_topic("order_created"), IsEmpty());  // an event is not a topic
}

TEST(TopicRouterTest, TopicWithoutEventsIsListedButOwnsNothing) {
  const TopicRouter router{{"audit", {}}, {"orders", {"order_created"}}};
  EXPECT_THAT(router.topics(), ElementsAre("audit", "orders"));
  EXPECT_THAT(router.events_for_topic("audit"), IsEmpty());
  EXPECT_EQ(router.topic_for_event("order_created"), "orders");
}

TEST(TopicRouterTest, DefaultConstructedRouterFindsNothing) {
  const TopicRouter router;
  EXPECT_THAT(router.topics(), IsEmpty());
  EXPECT_EQ(router.topic_for_event("order_created"), std::nullopt);
  EXPECT_EQ(router.topic_for_event(EventName("order_created")), std::nullopt);
  EXPECT_THAT(router.events_for_topic("orders"), IsEmpty());
}

TEST(TopicRouterTest, BuildsFromGroupsMadeAtRunTime) {
  std::vector<TopicGroup> groups;
  for (int t = 0; t < 3; ++t) {
    TopicGroup group{"topic_" + std::to_string(t), {}};
    for (int e = 0; e < 4; ++e)
      group.events.push_back("event_" + std::to_string(t * 4 + e));
    groups.push_back(std::move(group));
  }
  const TopicRouter router(groups);
  groups.clear();  // the router keeps its own copies
  EXPECT_EQ(router.topic_for_event("event_0"), "topic_0");
  EXPECT_EQ(router.topic_for_event("event_11"), "topic_2");
  EXPECT_THAT(router.events_for_topic("topic_1"),
              ElementsAre("event_4", "event_5", "event_6", "event_7"));
}

TEST(TopicRouterTest, ViewsStayValidWhileACopyLives) {
  std::optional<std::string_view> topic_name;
  std::span<const std::string_view> events;
  TopicRouter copy;
  {
    const TopicRouter original = seed_router();
    topic_name = original.topic_for_event("item_moved");
    events = original.events_for_topic("users");
    copy = original;
  }
  // ASan would report a use after free if the copy did not keep the text alive.
  EXPECT_EQ(topic_name, "inventory");
  EXPECT_EQ(copy.topic_for_event("item_moved"), "inventory");
  EXPECT_EQ(copy.topic_for_event(EventName("user_created")), "users");
  EXPECT_THAT(copy.events_for_topic("users"), ElementsAre("user_created", "user_updated"));
}

TEST(TopicRouterTest, MovedRouterKeepsItsViewsAndSourceFindsNothing) {
  TopicRouter source = seed_router();
  const std::string_view before = *source.topic_for_event("order_created");
  const TopicRouter moved = std::move(source);
  const std::string_view after = *moved.topic_for_event("order_created");
  EXPECT_EQ(before.data(), after.data());
  // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from router must stay safe to query.
  EXPECT_EQ(source.topic_for_event("order_created"), std::nullopt);
  EXPECT_EQ(source.topic_for_event(EventName("order_created")), std::nullopt);
}

TEST(TopicRouterTest, HandlesManyTopicsAndEvents) {
  constexpr int kTopicCount = 200;
  constexpr int kEventsPerTopic = 50;
  std::vector<TopicGroup> groups;
  for (int t = 0; t < kTopicCount; ++t) {
    TopicGroup group{"topic." + std::to_string(t), {}};
    for (int e = 0; e < kEventsPerTopic; ++e) {
      group.events.push_back("evt_" + std::to_string(t) + "_" + std::to_string(e));
    }
    groups.push_back(std::move(group));
  }
  const TopicRouter router(groups);
  ASSERT_EQ(router.topics().size(), static_cast<std::size_t>(kTopicCount));
  for (int t = 0; t < kTopicCount; ++t) {
    const std::string topic_name = "topic." + std::to_string(t);
    ASSERT_EQ(router.topics()[static_cast<std::size_t>(t)], topic_name);
    ASSERT_EQ(router.events_for_topic(topic_name).size(),
              static_cast<std::size_t>(kEventsPerTopic));
    for (int e = 0; e < kEventsPerTopic; ++e) {
      const std::string event = "evt_" + std::to_string(t) + "_" + std::to_string(e);
      ASSERT_EQ(router.topic_for_event(event), topic_name) << event;
      ASSERT_EQ(router.topic_for_event(EventName(event)), topic_name) << event;
    }
  }
  for (int miss = 0; miss < 1000; ++miss) {
    const std::string event = "evt_" + std::to_string(miss) + "_x";
    ASSERT_EQ(router.topic_for_event(event), std::nullopt) << event;
  }
}

TEST(TopicRouterTest, ConcurrentLookupsAgree) {
  const TopicRouter router = seed_router();
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (std::size_t i = 0; i < wrong.size(); ++i) {
    threads.emplace_back([&router, &count = wrong[i]] {
      for (int n = 0; n < 10'000; ++n) {
        if (router.topic_for_event("item_adjusted") != "inventory") ++count;
        if (router.topic_for_event(EventName("user_created")) != "users") ++count;
        if (router.topic_for_event("missing").has_value()) ++count;
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  EXPECT_THAT(wrong, ::testing::Each(0));
}

// ---- run time: configuration errors ---------------------------------------------------

TEST(TopicRouterTest, EventInTwoTopicsThrowsNamingTheEventAndBothTopics) {
  const std::string message =
      config_error({{"orders", {"order_created"}}, {"audit", {"user_created", "order_created"}}});
  EXPECT_THAT(message, HasSubstr("\"order_created\""));
  EXPECT_THAT(message, HasSubstr("\"orders\""));
  EXPECT_THAT(message, HasSubstr("\"audit\""));
}

TEST(TopicRouterTest, EventListedTwiceInOneTopicThrows) {
  const std::string message = config_error({{"orders", {"order_created", "order_created"}}});
  EXPECT_THAT(message, HasSubstr("event \"order_created\" is listed twice in topic \"orders\""));
}

TEST(TopicRouterTest, EmptyTopicNameThrowsNamingTheGroup) {
  const std::string message = config_error({{"orders", {"order_created"}}, {"", {"x"}}});
  EXPECT_THAT(message, HasSubstr("topic name must not be empty"));
  EXPECT_THAT(message, HasSubstr("group #2"));
}

TEST(TopicRouterTest, EmptyEventNameThrowsNamingTheTopicAndPosition) {
  const std::string message = config_error({{"orders", {"order_created", ""}}});
  EXPECT_THAT(message, HasSubstr("event name must not be empty"));
  EXPECT_THAT(message, HasSubstr("event #2 of topic \"orders\""));
}

TEST(TopicRouterTest, TopicDeclaredTwiceThrowsNamingIt) {
  const std::string message = config_error({{"orders", {"a"}}, {"users", {}}, {"orders", {"b"}}});
  EXPECT_THAT(message, HasSubstr("topic \"orders\" is declared twice (groups #1 and #3)"));
}

TEST(TopicRouterTest, ConfigErrorIsAnInvalidArgument) {
  EXPECT_THROW(TopicRouter({{"orders", {"a", "a"}}}), std::invalid_argument);
  EXPECT_NO_THROW(TopicRouter({{"orders", {"a"}}, {"users", {"b"}}}));
}

}  // namespace
}  // namespace emissions
