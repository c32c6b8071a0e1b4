/*
 * Starts one genuine Elasticsearch node in this JVM for hcm-soc's development,
 * tests and demo. It does what the distribution's bootstrap does minus the
 * parts that need the server CLI (keystore, security manager, root check):
 * settings -> environment -> Node -> start, and closes the node on SIGTERM.
 *
 * Usage: DevNode -basePath DIR -httpPort PORT -clusterName NAME [-transportPort PORT]
 * The distribution folder (lib/, modules/) is given by -Dhcm.devnode.home.
 */
package vn.hcmsoc.devnode.launcher;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class DevNode {
    private DevNode() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("-")) {
                throw new IllegalArgumentException("expected an option like -basePath, got " + args[i]);
            }
            opts.put(args[i].substring(1), args[i + 1]);
        }
        String home = System.getProperty("hcm.devnode.home");
        if (home == null) {
            throw new IllegalArgumentException("system property hcm.devnode.home (the distribution folder) is missing");
        }
        Path base = Path.of(require(opts, "basePath")).toAbsolutePath();
        String clusterName = opts.getOrDefault("clusterName", "hcm-soc-dev");
        String httpPort = opts.getOrDefault("httpPort", "9200");
        String transportPort = opts.getOrDefault("transportPort", "9300-9399");
        Path config = base.resolve("config");
        Files.createDirectories(config);
        Path yml = config.resolve("elasticsearch.yml");
        if (Files.notExists(yml)) {
            Files.writeString(yml, "# settings of the hcm-soc development node; command-line settings win\n");
        }

        Settings settings = Settings.builder()
            .put("path.home", Path.of(home).toAbsolutePath().toString())
            .put("path.data", base.resolve("data").toString())
            .put("path.logs", base.resolve("logs").toString())
            .put("cluster.name", clusterName)
            .put("node.name", clusterName + "-node-1")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            .put("transport.port", transportPort)
            .put("discovery.type", "single-node")
            // developer machines and CI often run with little free disk: never
            // turn indices read-only because of the disk watermarks
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("http.max_content_length", "200mb")
            .build();

        LogConfigurator.configureESLogging();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> clusterName + "-node-1");
        Node node = new Node(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "hcm-devnode-shutdown"));
        node.start();
        System.out.println("hcm-devnode: started http://127.0.0.1:" + httpPort + " cluster=" + clusterName);
        stopped.await();
    }

    private static String require(Map<String, String> opts, String key) {
        String value = opts.get(key);
        if (value == null) {
            throw new IllegalArgumentException("missing option -" + key);
        }
        return value;
    }
}
