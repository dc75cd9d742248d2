package metrics

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// KafkaStats keeps the latest librdkafka statistics document of each of the
// gateway's Kafka clients and exports broker health and consumer lag from
// them at scrape time. Documents are stored as they come (a string per
// client per interval) and parsed only when scraped.
type KafkaStats struct {
	maxAge time.Duration // older documents belong to clients that closed
	now    func() time.Time

	mu   sync.Mutex
	docs map[clientKey]statsDoc

	brokerUp, brokerRTT, brokerErrors, lag *prometheus.Desc
}

type clientKey struct{ client, group string }

type statsDoc struct {
	json string
	at   time.Time
}

// RegisterKafkaStats registers the librdkafka statistics metrics. interval
// is statistics.interval.ms: a client whose last document is three intervals
// old is taken to be gone.
func RegisterKafkaStats(r *Registry, interval time.Duration) *KafkaStats {
	labels := []string{"client", "group", "broker"}
	k := &KafkaStats{
		maxAge: 3 * interval,
		now:    time.Now,
		docs:   make(map[clientKey]statsDoc),
		brokerUp: prometheus.NewDesc("gateway_kafka_broker_up",
			"1 while the client's connection to the broker is up (librdkafka state UP), else 0.", labels, nil),
		brokerRTT: prometheus.NewDesc("gateway_kafka_broker_rtt_seconds",
			"Request round-trip time to the broker over the last statistics interval, at the quantile.", append(labels, "quantile"), nil),
		brokerErrors: prometheus.NewDesc("gateway_kafka_broker_errors_total",
			"Errors on the client's connection to the broker since the client started, by kind: tx, rx, timeout (requests timed out), disconnect.", append(labels, "kind"), nil),
		lag: prometheus.NewDesc("gateway_consumer_lag_records",
			"Records between the group's committed offset and the partition's end (librdkafka consumer_lag), for partitions assigned to this gateway.", []string{"group", "topic", "partition"}, nil),
	}
	r.MustRegister(k)
	return k
}

// Producer stores a statistics document of the producer.
func (k *KafkaStats) Producer(doc string) { k.store(clientKey{client: "producer"}, doc) }

// Consumer stores a statistics document of a group's consumer.
func (k *KafkaStats) Consumer(group, doc string) {
	k.store(clientKey{client: "consumer", group: group}, doc)
}

func (k *KafkaStats) store(key clientKey, doc string) {
	k.mu.Lock()
	k.docs[key] = statsDoc{json: doc, at: k.now()}
	k.mu.Unlock()
}

func (k *KafkaStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- k.brokerUp
	ch <- k.brokerRTT
	ch <- k.brokerErrors
	ch <- k.lag
}

// rdStats is the part of librdkafka's statistics JSON the gateway exports
// (librdkafka STATISTICS.md).
type rdStats struct {
	Brokers map[string]struct {
		Name        string `json:"name"`
		NodeID      int32  `json:"nodeid"`
		Source      string `json:"source"`
		State       string `json:"state"`
		TxErrs      int64  `json:"txerrs"`
		RxErrs      int64  `json:"rxerrs"`
		ReqTimeouts int64  `json:"req_timeouts"`
		Disconnects int64  `json:"disconnects"`
		RTT         struct {
			P50 int64 `json:"p50"`
			P99 int64 `json:"p99"`
			Cnt int64 `json:"cnt"`
		} `json:"rtt"`
	} `json:"brokers"`
	Topics map[string]struct {
		Topic      string `json:"topic"`
		Partitions map[string]struct {
			Partition   int32  `json:"partition"`
			FetchState  string `json:"fetch_state"`
			ConsumerLag int64  `json:"consumer_lag"`
		} `json:"partitions"`
	} `json:"topics"`
}

func (k *KafkaStats) Collect(ch chan<- prometheus.Metric) {
	now := k.now()
	k.mu.Lock()
	docs := make(map[clientKey]string, len(k.docs))
	for key, d := range k.docs {
		if now.Sub(d.at) > k.maxAge {
			delete(k.docs, key)
			continue
		}
		docs[key] = d.json
	}
	k.mu.Unlock()

	for key, doc := range docs {
		var st rdStats
		if err := json.Unmarshal([]byte(doc), &st); err != nil {
			continue
		}
		for _, b := range st.Brokers {
			if b.NodeID < 0 || b.Source != "learned" {
				continue // bootstrap and internal placeholders
			}
			ch <- prometheus.MustNewConstMetric(k.brokerUp, prometheus.GaugeValue, b2f(b.State == "UP"), key.client, key.group, b.Name)
			if b.RTT.Cnt > 0 {
				ch <- prometheus.MustNewConstMetric(k.brokerRTT, prometheus.GaugeValue, float64(b.RTT.P50)/1e6, key.client, key.group, b.Name, "0.5")
				ch <- prometheus.MustNewConstMetric(k.brokerRTT, prometheus.GaugeValue, float64(b.RTT.P99)/1e6, key.client, key.group, b.Name, "0.99")
			}
			for kind, v := range map[string]int64{"tx": b.TxErrs, "rx": b.RxErrs, "timeout": b.ReqTimeouts, "disconnect": b.Disconnects} {
				ch <- prometheus.MustNewConstMetric(k.brokerErrors, prometheus.CounterValue, float64(v), key.client, key.group, b.Name, kind)
			}
		}
		if key.client != "consumer" {
			continue
		}
		for name, t := range st.Topics {
			for _, p := range t.Partitions {
				if p.Partition < 0 || p.ConsumerLag < 0 || p.FetchState == "none" {
					continue // the unassigned placeholder, unknown lag, or not assigned here
				}
				ch <- prometheus.MustNewConstMetric(k.lag, prometheus.GaugeValue, float64(p.ConsumerLag), key.group, name, strconv.Itoa(int(p.Partition)))
			}
		}
	}
}
