// Prints reference vectors for Kafka's key partitioner, computed with the real
// kafka-clients implementation (org.apache.kafka.common.utils.Utils).
//
// Run (single-file source launch, Java 11+):
//   java -cp '<kafka libs dir>/*' scripts/kafka/Murmur2Vectors.java
// or: scripts/services.sh murmur2-vectors
//
// Each output line is a Go composite literal:
//   {key, murmur2(utf8(key)) as int32, p3, p4, p12},
// where pN = Utils.toPositive(murmur2) % N, i.e. the partition that the Java
// producer's built-in partitioner picks for a keyed record on an N-partition topic.

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import org.apache.kafka.common.utils.Utils;

public class Murmur2Vectors {
    // Non-ASCII keys are written as escapes so the source does not depend on
    // the platform's default file encoding.
    static final String[] KEYS = {
        "", "a",
        "key-0", "key-1", "key-2", "key-3", "key-4",
        "key-5", "key-6", "key-7", "key-8", "key-9",
        "order-42", "customer/17", "h\u00e9llo", "21", "foobar",
        "a-little-bit-long-string", "a-little-bit-longer-string",
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
    };

    static final int[] PARTITIONS = {3, 4, 12};

    public static void main(String[] args) {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.println("// key, murmur2 (int32), partition for n=3, n=4, n=12");
        for (String key : KEYS) {
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            int h = Utils.murmur2(bytes);
            StringBuilder line = new StringBuilder();
            line.append('{').append(goQuote(key)).append(", ").append(h);
            for (int n : PARTITIONS) {
                line.append(", ").append(Utils.toPositive(h) % n);
            }
            line.append("},");
            out.println(line);
        }
    }

    // Go/JSON-compatible double-quoted string (keys here need no escapes beyond these).
    static String goQuote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
